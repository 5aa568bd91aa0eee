//! `prescient diff`: every stage of one transaction, dumped into a folder.
//!
//! ```text
//!   <out>/summary.txt      what happened, and the first difference if any
//!   <out>/trace.txt        the pre-execution as the tracer saw it
//!   <out>/program.ir       the lowered program (text format)
//!   <out>/optimized.ir     after passes::optimize
//!   <out>/revm.json        the reference outcome (sequential revm on the actual state)
//!   <out>/evaluation.json  the interpreter's result on the same state
//!   <out>/native.clif      the compiled program lowered to Cranelift IR (before Cranelift's passes)
//!   <out>/native.asm       the machine code Cranelift emitted for it
//! ```
//!
//! The transaction runs on its block's actual state: the pre-state with every earlier
//! transaction of the block committed.

use std::{fmt::Write as _, fs, path::Path};

use eyre::{Result, WrapErr, eyre};
use ir::{
    interp::{Evaluation, FUEL, evaluate},
    record::{RecordConfig, record},
    text,
};
use mempool_tap::Dataset;
use revm::{DatabaseCommit, primitives::B256};

/// What `diff` found, for the command line's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffVerdict {
    /// The program hit and equals revm.
    Hit,
    /// The program missed (or there is none): no wrong result.
    NoHit,
    /// The program hit with a result different from revm's: a soundness bug.
    WrongHit,
}

/// Finds `hash` in `dataset`, runs every stage and writes the folder `out`.
pub fn diff(dataset: &Dataset, hash: B256, out: &Path) -> Result<(DiffVerdict, String)> {
    let mut found = None;
    for block_ref in dataset.complete_blocks() {
        let block = dataset.load(block_ref)?;
        if let Some(index) = block.txs.iter().position(|t| t.hash == Some(hash)) {
            found = Some((block, index));
            break;
        }
    }
    let (block, index) =
        found.ok_or_else(|| eyre!("transaction {hash} is in no complete block of {}", dataset.root().display()))?;
    let mut db = block.state_db();
    for tx in &block.txs[..index] {
        let (_, state) = ir::execute_tx(&db, &block.cfg, &block.env, &tx.env)?;
        db.commit(state);
    }
    let tx = &block.txs[index].env;
    fs::create_dir_all(out).wrap_err_with(|| format!("creating {}", out.display()))?;
    let write = |name: &str, content: &str| {
        fs::write(out.join(name), content).wrap_err_with(|| format!("writing {}", out.join(name).display()))
    };

    let (expected, _) = ir::execute_tx(&db, &block.cfg, &block.env, tx)?;
    write("revm.json", &serde_json::to_string_pretty(&expected)?)?;
    let config = RecordConfig { log_steps: true, ..RecordConfig::default() };
    let recording = record(&db, &block.cfg, &block.env, tx, config)?;
    let mut summary = String::new();
    let _ = writeln!(summary, "transaction {hash}: block {} index {index}, {:?}", block.number, block.spec);
    let _ = writeln!(summary, "revm: {:?}, gas {}", expected.status, expected.gas_used);
    let mut trace = format!(
        "{} steps traced{}\n; each line: depth, pc, opcode, symbolic stack depth and top values, program size\n",
        recording.trace.steps,
        recording.trace.abort.as_ref().map(|a| format!(", stopped: {a}")).unwrap_or_default()
    );
    for line in &recording.trace.log {
        trace.push_str(line);
        trace.push('\n');
    }
    write("trace.txt", &trace)?;
    if let Some(why) = &recording.trace.abort {
        let _ = writeln!(summary, "tracer stopped: {why}");
    }

    let verdict = match &recording.program {
        Err(reason) => {
            let _ = writeln!(summary, "no program: {}", reason.name());
            DiffVerdict::NoHit
        }
        Ok(program) => {
            write("program.ir", &text::print(program))?;
            // Every tier, checked against revm by the oracle (the same check every test
            // layer runs).
            let prepared = oracle::prepare(program);
            let optimized = prepared.at(oracle::Tier::Optimized).unwrap_or(program);
            write("optimized.ir", &text::print(optimized))?;
            let _ = writeln!(
                summary,
                "program: {} instructions, {} guards; optimized: {} instructions, {} guards",
                program.insts.len(),
                program.guard_count(),
                optimized.insts.len(),
                optimized.guard_count()
            );
            native_listing(optimized, &write, &mut summary)?;
            let checked = oracle::check(&prepared, &db, &block.cfg, &block.env, || Ok(expected.clone()), "");
            for problem in &checked.problems {
                let _ = writeln!(summary, "PROBLEM (a bug):{problem}");
            }
            match (&checked.hit, checked.miss) {
                (Some(outcome), _) => {
                    write("evaluation.json", &serde_json::to_string_pretty(outcome)?)?;
                    if checked.is_sound() {
                        let _ = writeln!(summary, "evaluation: hit at every tier, identical to revm");
                        DiffVerdict::Hit
                    } else {
                        DiffVerdict::WrongHit
                    }
                }
                (None, miss) => {
                    // Where the optimized program misses, for reading next to optimized.ir.
                    let at = match evaluate(optimized, &db, &block.cfg, &block.env, FUEL) {
                        Evaluation::Miss(m) => optimized.insts.get(m.at.index()).map(|i| text::print_inst(m.at, i)),
                        Evaluation::Hit(_) => None,
                    };
                    write("evaluation.json", &format!("{{\"miss\": \"{miss:?}\"}}\n"))?;
                    let _ = writeln!(summary, "evaluation: miss {miss:?} at {}", at.unwrap_or_default());
                    if checked.is_sound() { DiffVerdict::NoHit } else { DiffVerdict::WrongHit }
                }
            }
        }
    };
    write("summary.txt", &summary)?;
    Ok((verdict, summary))
}

/// Writes `native.clif` and `native.asm`: the optimized program compiled for the evaluator,
/// then to native code, as import would run it; the summary says how big and how long, or
/// why it was not compiled.
fn native_listing(
    optimized: &ir::program::Program,
    write: &impl Fn(&str, &str) -> Result<()>,
    summary: &mut String,
) -> Result<()> {
    let compiled = match ir::compact::Compiled::new(optimized) {
        Ok(compiled) => std::sync::Arc::new(compiled),
        Err(e) => {
            let _ = writeln!(summary, "native: none (no compact form: {e})");
            return Ok(());
        }
    };
    match jit::Native::compile_with_listing(compiled, &jit::Limits::any_size()) {
        Ok((native, listing)) => {
            write("native.clif", &listing.clif)?;
            write("native.asm", &listing.disassembly)?;
            let _ = writeln!(
                summary,
                "native: {} bytes of code, compiled in {:.2} ms",
                native.code_bytes(),
                native.compile_time().as_secs_f64() * 1e3
            );
        }
        Err(e) => {
            let _ = writeln!(summary, "native: none ({e})");
        }
    }
    Ok(())
}
