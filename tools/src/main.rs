//! The `prescient` command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use eyre::{Result, WrapErr};
use indicatif::{ProgressBar, ProgressStyle};
use mempool_tap::{
    Dataset,
    recorded::{DATA_ENV, locate_data_dir},
};
use prescient_tools::replay::{Summary, Verdict, mgas_per_s, replay_block, source_label};
use revm::primitives::B256;

#[derive(Parser)]
#[command(name = "prescient", version, about = "Speculative pre-execution for Ethereum block import")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay recorded blocks with sequential revm and check them against ground truth.
    Replay {
        /// Recorded-traffic folder (default: $PRESCIENT_DATA, then ../shared/bench-data).
        #[arg(long, env = DATA_ENV)]
        data: Option<PathBuf>,
        /// Replay only these blocks (repeatable). Default: every complete block.
        #[arg(long = "block", value_name = "N")]
        blocks: Vec<u64>,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Dump every stage of one transaction (trace, IR, optimized IR, evaluation against revm).
    Diff {
        /// Recorded-traffic folder (default: $PRESCIENT_DATA, then ../shared/bench-data).
        #[arg(long, env = DATA_ENV)]
        data: Option<PathBuf>,
        /// The transaction hash.
        #[arg(long)]
        tx: B256,
        /// Output folder (default: ./diff-<hash prefix>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay { data, blocks, no_progress } => replay(data, &blocks, no_progress),
        Command::Diff { data, tx, out } => diff(data, tx, out),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs `prescient diff`; `Ok(false)` on a wrong hit.
fn diff(data: Option<PathBuf>, tx: B256, out: Option<PathBuf>) -> Result<bool> {
    let dir = locate_data_dir(data.as_deref())?;
    let dataset = Dataset::open(&dir).wrap_err_with(|| format!("opening {}", dir.display()))?;
    ir::warm_up();
    let out = out.unwrap_or_else(|| PathBuf::from(format!("diff-{}", &tx.to_string()[2..10])));
    let (verdict, summary) = prescient_tools::diff::diff(&dataset, tx, &out)?;
    print!("{summary}");
    println!("stages written to {}", out.display());
    Ok(verdict != prescient_tools::diff::DiffVerdict::WrongHit)
}

/// Runs `prescient replay`; `Ok(false)` when a check failed.
fn replay(data: Option<PathBuf>, numbers: &[u64], no_progress: bool) -> Result<bool> {
    let dir = locate_data_dir(data.as_deref())?;
    let dataset = Dataset::open(&dir).wrap_err_with(|| format!("opening {}", dir.display()))?;
    let selected = if numbers.is_empty() {
        dataset.complete_blocks().cloned().collect::<Vec<_>>()
    } else {
        numbers.iter().map(|n| dataset.find(*n).cloned()).collect::<Result<Vec<_>, _>>()?
    };
    eyre::ensure!(!selected.is_empty(), "{} lists no complete block", dir.display());
    ir::warm_up();

    let bar = if no_progress { ProgressBar::hidden() } else { ProgressBar::new(selected.len() as u64) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} blocks {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let header = format!(
        "{:>10}  {:<8}  {:<16}  {:>5}  {:>11}  {:>9}  {:>8}  checks",
        "block", "source", "fork", "txs", "gas", "time ms", "Mgas/s"
    );
    bar.suspend(|| println!("{header}"));

    let mut summary = Summary::default();
    let mut load_failures = 0usize;
    for block_ref in &selected {
        bar.set_message(format!("block {}", block_ref.number));
        let block = match dataset.load(block_ref) {
            Ok(block) => block,
            Err(e) => {
                load_failures += 1;
                bar.suspend(|| println!("{:>10}  cannot load: {e}", block_ref.number));
                bar.inc(1);
                continue;
            }
        };
        let report = replay_block(&block);
        summary.add(&report);
        let checks: Vec<String> = report
            .checks
            .iter()
            .map(|c| match &c.verdict {
                Verdict::Pass => format!("{} ok", c.name),
                Verdict::Fail(_) => format!("{} FAIL", c.name),
            })
            .collect();
        // Show the recorded label, and the spec actually used when the label says otherwise.
        let fork = match mempool_tap::recorded::fork::parse_fork(&block.fork) {
            Some(spec) if spec == block.spec => block.fork.clone(),
            _ => format!("{:?} ({})", block.spec, block.fork),
        };
        bar.suspend(|| {
            println!(
                "{:>10}  {:<8}  {:<16}  {:>5}  {:>11}  {:>9.3}  {:>8.1}  {}",
                report.number,
                source_label(block.source),
                fork,
                report.txs,
                report.gas_used,
                report.exec_time.as_secs_f64() * 1e3,
                report.mgas_per_s(),
                checks.join(", ")
            );
            for check in &report.checks {
                if let Verdict::Fail(why) = &check.verdict {
                    println!("{:>10}  {} failed: {why}", "", check.name);
                }
            }
        });
        bar.inc(1);
    }
    bar.finish_and_clear();

    let failed = summary.failed + load_failures;
    println!(
        "summary: {} blocks, {} txs, {:.1} Mgas in {:.3} s of execution: {:.1} Mgas/s; {} checks passed, {}",
        summary.blocks,
        summary.txs,
        summary.gas as f64 / 1e6,
        summary.exec_time.as_secs_f64(),
        mgas_per_s(summary.gas, summary.exec_time),
        summary.passed,
        match (summary.failed, load_failures) {
            (0, 0) => "none failed".to_string(),
            (c, 0) => format!("{c} FAILED"),
            (c, l) => format!("{c} FAILED, {l} blocks could not be loaded"),
        }
    );
    Ok(failed == 0)
}
