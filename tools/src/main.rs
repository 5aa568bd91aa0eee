//! The `prescient` command line.

use std::{path::PathBuf, process::ExitCode};

use accelerator::{PipelineConfig, ServiceConfig};
use clap::{Parser, Subcommand};
use eyre::{Result, WrapErr};
use indicatif::{ProgressBar, ProgressStyle};
use mempool_tap::{
    Dataset,
    recorded::{DATA_ENV, locate_data_dir},
};
use prescient_tools::evaluate::EvaluateOptions;
use prescient_tools::replay::{
    Mode, ModeSummary, Summary, Verdict, compare_mode, mgas_per_s, replay_block, source_label,
};
use revm::primitives::B256;

#[derive(Parser)]
#[command(name = "prescient", version, about = "Speculative pre-execution for Ethereum block import")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay recorded blocks whole (system calls, transactions, rewards, withdrawals) with
    /// sequential revm and check them against ground truth; with `--mode parallel`, also run
    /// each block through that executor, compare it in full with sequential revm and time both,
    /// alternating.
    Replay {
        /// Recorded-traffic folder (default: $PRESCIENT_DATA, then ../shared/bench-data).
        #[arg(long, env = DATA_ENV)]
        data: Option<PathBuf>,
        /// Replay only these blocks (repeatable). Default: every complete block.
        #[arg(long = "block", value_name = "N")]
        blocks: Vec<u64>,
        /// The executor to compare with sequential revm.
        #[arg(long, value_enum, default_value = "sequential")]
        mode: prescient_tools::replay::Mode,
        /// Threads of the parallel fallback (default: the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Model a disk-backed node: each cold account, slot or code read costs this many µs.
        #[arg(long, default_value_t = 0)]
        latency_us: u64,
        /// Timed runs of each executor per block (alternating which goes first; medians).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Least time measured per executor and block, in ms: a block that runs faster is
        /// timed more often than `--reps` (up to 2,000 runs, or `--reps` if more), so that its
        /// median is not noise.
        #[arg(long, default_value_t = 20)]
        min_ms: u64,
        /// Accelerated mode: share of transactions heard before their block (the simulated
        /// mempool of `evaluate`).
        #[arg(long, default_value_t = EvaluateOptions::default().heard)]
        heard: f64,
        /// Accelerated mode: most same-block-touch pre-executions per transaction (as
        /// `evaluate --touched-per-tx`).
        #[arg(long, default_value_t = EvaluateOptions::default().touched_per_tx)]
        touched_per_tx: usize,
        /// Write the per-block figures and the summary as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Evaluate the whole pipeline offline on recorded blocks: a simulated mempool, predicted
    /// futures and contexts, pre-execution, import verified against sequential revm, timings.
    /// Default data: the devnet recording committed under bench-data/.
    #[command(alias = "eval")]
    Evaluate {
        /// Recorded-traffic folder (a prescient recording, or the shared bench-data).
        #[arg(long, default_value = EMBEDDED_RECORDING)]
        data: PathBuf,
        /// Evaluate only these blocks (repeatable). Default: every complete block.
        #[arg(long = "block", value_name = "N")]
        blocks: Vec<u64>,
        /// Share of transactions heard before their block (without a recorded arrival log).
        #[arg(long, default_value_t = EvaluateOptions::default().heard)]
        heard: f64,
        /// Pre-executions per transaction at its arrival (futures × contexts).
        #[arg(long, default_value_t = EvaluateOptions::default().futures_per_tx)]
        futures: usize,
        /// Most predecessors in a predicted-block future.
        #[arg(long, default_value_t = EvaluateOptions::default().max_predecessors)]
        max_predecessors: usize,
        /// Alternating repetitions of each timing.
        #[arg(long, default_value_t = EvaluateOptions::default().reps)]
        reps: usize,
        /// Do not use the read-set memo (every hit evaluated): what the memo buys.
        #[arg(long)]
        no_read_sets: bool,
        /// Explain every miss of a heard transaction (its futures, where its programs miss) in
        /// `misses.md` of the report folder.
        #[arg(long)]
        explain: bool,
        /// The fewest compact-evaluator instructions a program needs to be compiled to native
        /// code (smaller ones stay with the evaluator).
        #[arg(long, default_value_t = EvaluateOptions::default().jit_min_instructions)]
        jit_min_instructions: usize,
        /// Most same-block-touch pre-executions per transaction: a pre-execution that moved a
        /// contract's clock field runs again with the field already at the block's clock (0:
        /// none; what they buy).
        #[arg(long, default_value_t = EvaluateOptions::default().touched_per_tx)]
        touched_per_tx: usize,
        /// Report folder (summary.json, blocks.json, report.md and plots).
        #[arg(long, default_value = "evaluate-report")]
        out: PathBuf,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Benchmarks: `hit` (where a hit's time goes), `merge` (evaluation cost of a merged
    /// program as its futures grow), `machine` (load latency and thread round trip).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Attach to a node: pre-execute its pending transactions and serve the fast path.
    Serve {
        /// The node's JSON-RPC endpoint (ws:// for subscriptions, http:// for polling).
        #[arg(long)]
        node: String,
        /// JSON-RPC listen address.
        #[arg(long, default_value = "127.0.0.1:8547")]
        listen: std::net::SocketAddr,
        /// Prometheus metrics listen address.
        #[arg(long, default_value = "127.0.0.1:9547")]
        metrics: std::net::SocketAddr,
        /// Do not export metrics.
        #[arg(long)]
        no_metrics: bool,
        /// The hardfork a devnet runs (default: mainnet's schedule on chain 1, osaka elsewhere).
        #[arg(long)]
        hardfork: Option<String>,
        /// Pre-execution workers.
        #[arg(long, default_value_t = ServiceConfig::default().workers)]
        workers: usize,
        /// Do not import each new head in shadow mode.
        #[arg(long)]
        no_shadow: bool,
        /// Pre-execution jobs queued before new ones are dropped (retried on the next head).
        #[arg(long, default_value_t = ServiceConfig::default().queue_capacity)]
        queue_capacity: usize,
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Record a node's pending-transaction arrivals and blocks with their pre-state.
    Record {
        /// The node's JSON-RPC endpoint.
        #[arg(long)]
        node: String,
        /// Output folder (must not hold a recording yet).
        #[arg(long)]
        out: PathBuf,
        /// Stop after this many blocks (default: until Ctrl-C / SIGTERM).
        #[arg(long)]
        blocks: Option<u64>,
        /// The hardfork a devnet runs (default: mainnet's schedule on chain 1, osaka elsewhere).
        #[arg(long)]
        hardfork: Option<String>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Dump every stage of one transaction (trace, IR, optimized IR, evaluation against revm).
    Diff {
        /// Recorded-traffic folder (default: $PRESCIENT_DATA, then ../shared/bench-data).
        #[arg(long, env = DATA_ENV)]
        data: Option<PathBuf>,
        /// The transaction hash.
        #[arg(long)]
        tx: B256,
        /// Output folder (default: `./diff-<hash prefix>`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Where a hit's time goes: revm's transact beside the compiled program's evaluation and
    /// the commit it builds, per block, each transaction's program pre-executed in its real
    /// context and state.
    Hit {
        /// Recorded-traffic folder (default: $PRESCIENT_DATA, then ../shared/bench-data).
        #[arg(long, env = DATA_ENV)]
        data: Option<PathBuf>,
        /// Blocks to use (repeatable).
        #[arg(long = "block", value_name = "N", required = true)]
        blocks: Vec<u64>,
        /// Repetitions per transaction.
        #[arg(long, default_value_t = 20)]
        reps: usize,
    },
    /// The machine's load latency by working set and a cache line's round trip between two
    /// threads, in about a second: what moves the import's ratios from one machine (or one
    /// day of a VM) to another; report it beside a measurement.
    Machine,
    /// Evaluation time of one transaction's programs merged into one tree, as the number of
    /// merged futures grows, beside the same programs tried one after another.
    Merge {
        /// Recorded-traffic folder (default: $PRESCIENT_DATA, then ../shared/bench-data).
        #[arg(long, env = DATA_ENV)]
        data: Option<PathBuf>,
        /// Blocks to use (repeatable).
        #[arg(long = "block", value_name = "N", required = true)]
        blocks: Vec<u64>,
        /// Most futures merged.
        #[arg(long, default_value_t = 12)]
        max: usize,
        /// Repetitions per transaction and size.
        #[arg(long, default_value_t = 20)]
        reps: usize,
    },
}

/// The devnet recording committed with the sources (made by `prescient record` on anvil).
const EMBEDDED_RECORDING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-data/devnet");

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,jsonrpsee=warn"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().wrap_err("starting the async runtime")
}

/// The pipeline core's knobs, with its defaults (`PipelineConfig::default()`).
#[derive(Debug, clap::Args)]
struct PipelineArgs {
    /// Most predecessors in a predicted-block future.
    #[arg(long, default_value_t = PipelineConfig::default().max_predecessors)]
    max_predecessors: usize,
    /// Most order flips per transaction: futures where a pending transaction that wrote what
    /// this one read goes on the other side of it.
    #[arg(long, default_value_t = PipelineConfig::default().flip_futures)]
    flip_futures: usize,
    /// Memory budget of the AP store, in MiB.
    #[arg(long, default_value_t = PipelineConfig::default().store_bytes >> 20)]
    store_mib: usize,
    /// Most same-block-touch pre-executions per transaction: a pre-execution that moved a
    /// contract's clock field (a pair's last-update time) runs again with the field already at
    /// the block's clock, the path behind an unheard transaction that touched it first (0: none).
    #[arg(long, default_value_t = PipelineConfig::default().touched_per_tx)]
    touched_per_tx: usize,
    /// Programs kept per transaction.
    #[arg(long, default_value_t = PipelineConfig::default().programs_per_tx)]
    programs_per_tx: usize,
    /// Pending transactions kept.
    #[arg(long, default_value_t = PipelineConfig::default().pool_capacity)]
    pool_capacity: usize,
    /// Memory budget of the precompile memo, in MiB.
    #[arg(long, default_value_t = PipelineConfig::default().memo_bytes >> 20)]
    memo_mib: usize,
    /// Largest program, in instructions (longer traces get no program).
    #[arg(long, default_value_t = PipelineConfig::default().record.max_insts)]
    max_program_insts: usize,
    /// Most interpreter steps traced per pre-execution.
    #[arg(long, default_value_t = PipelineConfig::default().record.max_steps)]
    max_trace_steps: u64,
    /// Machine code budget of the background native compiler, in MiB (0, the default: no
    /// native code, the compact evaluator serves every program; native code does not yet
    /// pay at whole-block import).
    #[arg(long, default_value_t = PipelineConfig::default().jit_code_bytes.unwrap_or(0) >> 20)]
    jit_code_mib: usize,
}

impl PipelineArgs {
    fn config(&self) -> PipelineConfig {
        let defaults = PipelineConfig::default();
        PipelineConfig {
            max_predecessors: self.max_predecessors,
            flip_futures: self.flip_futures,
            store_bytes: self.store_mib << 20,
            programs_per_tx: self.programs_per_tx.max(1),
            pool_capacity: self.pool_capacity.max(1),
            memo_bytes: self.memo_mib << 20,
            read_sets: defaults.read_sets,
            read_set_min_insts: defaults.read_set_min_insts,
            touched_per_tx: self.touched_per_tx,
            record: ir::record::RecordConfig {
                max_insts: self.max_program_insts,
                max_steps: self.max_trace_steps,
                ..defaults.record
            },
            jit_code_bytes: (self.jit_code_mib > 0).then_some(self.jit_code_mib << 20),
        }
    }
}

/// jemalloc, as reth runs: the glibc allocator's slow path for the block-sized nodes of an
/// outcome's maps (over its per-thread cache's 1 KiB) was a seventh of a transfer's evaluation.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay {
            data,
            blocks,
            mode,
            threads,
            latency_us,
            reps,
            min_ms,
            heard,
            touched_per_tx,
            json,
            no_progress,
        } => {
            let config = prescient_tools::replay::ModeConfig {
                mode,
                threads: threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                latency: std::time::Duration::from_micros(latency_us),
                reps,
                min_time: std::time::Duration::from_millis(min_ms),
                heard,
                touched_per_tx,
                recipients: Default::default(),
                arrivals: None,
            };
            replay(data, &blocks, &config, json.as_deref(), no_progress)
        }
        Command::Diff { data, tx, out } => diff(data, tx, out),
        Command::Evaluate {
            data,
            blocks,
            heard,
            futures,
            max_predecessors,
            reps,
            no_read_sets,
            explain,
            jit_min_instructions,
            touched_per_tx,
            out,
            no_progress,
        } => {
            let options = EvaluateOptions {
                heard: heard.clamp(0.0, 1.0),
                futures_per_tx: futures.max(1),
                max_predecessors,
                reps: reps.max(1),
                read_sets: !no_read_sets,
                explain,
                jit_min_instructions,
                touched_per_tx,
                ..EvaluateOptions::default()
            };
            evaluate(&data, &blocks, &options, &out, no_progress)
        }
        Command::Bench { what: BenchCommand::Merge { data, blocks, max, reps } } => {
            bench_merge(data, &blocks, max, reps)
        }
        Command::Bench { what: BenchCommand::Hit { data, blocks, reps } } => bench_hit(data, &blocks, reps),
        Command::Bench { what: BenchCommand::Machine } => bench_machine(),
        Command::Serve {
            node,
            listen,
            metrics,
            no_metrics,
            hardfork,
            workers,
            no_shadow,
            queue_capacity,
            pipeline,
            log_format,
        } => {
            init_logs(log_format);
            let service = ServiceConfig {
                workers,
                shadow: !no_shadow,
                queue_capacity,
                pipeline: pipeline.config(),
                hardfork: None,
            };
            let options = prescient_tools::live::ServeOptions {
                node,
                listen,
                metrics: (!no_metrics).then_some(metrics),
                hardfork,
                service,
            };
            runtime().and_then(|rt| rt.block_on(prescient_tools::live::serve(options))).map(|()| true)
        }
        Command::Record { node, out, blocks, hardfork, log_format } => {
            init_logs(log_format);
            let options = prescient_tools::live::RecordOptions { node, out, blocks, hardfork };
            runtime().and_then(|rt| rt.block_on(prescient_tools::live::record(options))).map(|n| n > 0)
        }
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

/// Runs `prescient evaluate`; `Ok(false)` on a divergence from sequential revm.
fn evaluate(
    data: &std::path::Path,
    numbers: &[u64],
    options: &EvaluateOptions,
    out: &std::path::Path,
    no_progress: bool,
) -> Result<bool> {
    use prescient_tools::evaluate::{
        KnownRecipients, Summary, evaluate_block, recorded_arrivals, recorded_recipients, write_report,
    };
    let dataset = Dataset::open(data).wrap_err_with(|| format!("opening {}", data.display()))?;
    let selected = if numbers.is_empty() {
        dataset.complete_blocks().cloned().collect::<Vec<_>>()
    } else {
        numbers.iter().map(|n| dataset.find(*n).cloned()).collect::<Result<Vec<_>, _>>()?
    };
    eyre::ensure!(!selected.is_empty(), "{} lists no complete block", data.display());
    ir::warm_up();
    let arrivals = dataset.arrivals()?;
    let arrivals = (!arrivals.is_empty()).then(|| recorded_arrivals(&arrivals));
    let bar = if no_progress { ProgressBar::hidden() } else { ProgressBar::new(2 * selected.len() as u64) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} ({eta} left)")
            .expect("static template")
            .progress_chars("=> "),
    );
    // Fee recipients of every block, for the candidates of the others.
    bar.set_message("reading fee recipients");
    let recipients = recorded_recipients(&dataset, |number| {
        if selected.iter().any(|b| b.number == number) {
            bar.inc(1);
        }
    })?;
    bar.suspend(|| {
        println!(
            "{}: {} blocks, {}",
            data.display(),
            selected.len(),
            match &arrivals {
                Some(_) => "heard as the recorded arrival log says".to_string(),
                None => format!("simulated mempool, {:.0}% heard", 100.0 * options.heard),
            }
        );
        println!(
            "{:>10}  {:>5}  {:>5}  {:>5}  {:>7}  {:>10}  {:>10}  {:>6}",
            "block", "txs", "heard", "hits", "hit %", "import ms", "revm ms", "ratio"
        );
    });
    let mut results = Vec::new();
    for block_ref in &selected {
        bar.set_message(format!("block {}", block_ref.number));
        let block = dataset.load(block_ref)?;
        let known = KnownRecipients::of_recorded(&recipients, block.number, options.fee_recipients);
        let r = evaluate_block(&block, &known, options, arrivals.as_ref())?;
        bar.suspend(|| {
            println!(
                "{:>10}  {:>5}  {:>5}  {:>5}  {:>6.1}%  {:>10.3}  {:>10.3}  {:>5.2}x",
                r.number,
                r.txs.len(),
                r.heard(),
                r.hits(),
                r.hit_percent(),
                r.import_ms,
                r.revm_ms,
                r.import_ratio()
            );
            for d in &r.divergences {
                println!("{:>10}  DIVERGENCE {d}", "");
            }
            for d in &r.disagreements {
                println!("{:>10}  DISAGREEMENT {d}", "");
            }
        });
        results.push(r);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = Summary::of(&results, options);
    write_report(out, &summary, &results)?;
    println!(
        "summary: {} txs, {} heard, hits {:.2}% of heard (perfect {}, imperfect {}), missed {}, not pre-executed {}, \
         not heard {}; speedup on hits {:.2}x (median {:.2}x, p10 {:.2}x; {:.2}x against revm with a precompile cache), heard {:.2}x, all {:.2}x, block import {:.2}x; \
         {} divergences",
        summary.txs,
        summary.heard,
        100.0 * summary.hit_rate_heard,
        summary.hits_perfect,
        summary.hits_imperfect,
        summary.missed,
        summary.not_preexecuted,
        summary.not_heard,
        summary.speedup_hits,
        summary.speedup_hits_median,
        summary.speedup_hits_p10,
        summary.speedup_hits_cached,
        summary.speedup_heard,
        summary.speedup_all,
        summary.block_speedup,
        summary.divergences
    );
    println!(
        "native code: {} programs compiled ({} distinct skeletons; compile p50 {:.2} ms, p99 {:.2} ms, code median {:.0} bytes), {} left to \
         the evaluator; on hits {:.2}x with native code against {:.2}x with the evaluator (native median {:.2}x, p10 \
         {:.2}x), block import {:.2}x; {} disagreements",
        summary.native_programs,
        summary.native_skeletons,
        summary.compile_ms_p50,
        summary.compile_ms_p99,
        summary.code_bytes_median,
        summary.not_compiled,
        summary.speedup_jit,
        summary.speedup_evaluator,
        summary.speedup_jit_median,
        summary.speedup_jit_p10,
        summary.block_speedup_jit,
        summary.disagreements
    );
    println!(
        "predicted access list: recall {:.1}%, precision {:.1}%",
        summary.access_list_recall * 100.0,
        summary.access_list_precision * 100.0
    );
    println!("misses by reason: {:?}", summary.miss_reasons);
    println!("pre-executions by result: {:?}", summary.pre_execution_results);
    println!("report written to {}", out.display());
    Ok(summary.divergences == 0 && summary.disagreements == 0)
}

/// Runs `prescient bench hit`.
fn bench_hit(data: Option<PathBuf>, numbers: &[u64], reps: usize) -> Result<bool> {
    let dir = locate_data_dir(data.as_deref())?;
    let dataset = Dataset::open(&dir).wrap_err_with(|| format!("opening {}", dir.display()))?;
    ir::warm_up();
    println!(
        "{:>8}  {:>5}  {:>5}  {:>12}  {:>12}  {:>12}  {:>14}  {:>12}  {:>7}  {:>7}  {:>6}  {:>8}  {:>8}",
        "block",
        "txs",
        "hits",
        "revm ns/hit",
        "eval ns/hit",
        "warm ns/hit",
        "commit ns/hit",
        "memo ns/hit",
        "eval",
        "memo",
        "native",
        "n.eval",
        "n.native"
    );
    let mut total = prescient_tools::bench::HitRow::default();
    for n in numbers {
        let block = dataset.load(dataset.find(*n)?)?;
        let row = prescient_tools::bench::hit(&block, reps)?;
        let per = |ns: f64| ns / row.hits.max(1) as f64;
        println!(
            "{:>8}  {:>5}  {:>5}  {:>12.0}  {:>12.0}  {:>12.0}  {:>14.0}  {:>12.0}  {:>6.2}x  {:>6.2}x  {:>6}  {:>7.2}x  {:>7.2}x",
            n,
            row.txs,
            row.hits,
            per(row.revm_ns),
            per(row.evaluate_ns),
            per(row.warm_ns),
            per(row.commit_state_ns),
            per(row.read_set_ns),
            row.revm_ns / (row.evaluate_ns + row.commit_state_ns).max(1.0),
            row.revm_ns / (row.read_set_ns + row.commit_state_ns).max(1.0),
            row.native_hits,
            row.native_revm_ns / row.native_evaluate_ns.max(1.0),
            row.native_revm_ns / row.native_ns.max(1.0),
        );
        total.native_hits += row.native_hits;
        total.native_ns += row.native_ns;
        total.native_evaluate_ns += row.native_evaluate_ns;
        total.native_revm_ns += row.native_revm_ns;
        total.disagreements += row.disagreements;
        total.too_large += row.too_large;
        total.compile_ms.extend(row.compile_ms);
        total.code_bytes.extend(row.code_bytes);
    }
    let mut compile = total.compile_ms.clone();
    compile.sort_by(f64::total_cmp);
    let pick = |q: f64| compile.get(((compile.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    total.code_bytes.sort_unstable();
    println!(
        "native code: {} hits timed, evaluation (no commit) {:.2}x revm with the evaluator, {:.2}x with native code; \
         {} programs compiled (compile p50 {:.2} ms, p99 {:.2} ms, code median {} bytes), {} past the limits, {} disagreements",
        total.native_hits,
        total.native_revm_ns / total.native_evaluate_ns.max(1.0),
        total.native_revm_ns / total.native_ns.max(1.0),
        compile.len(),
        pick(0.5),
        pick(0.99),
        total.code_bytes.get(total.code_bytes.len() / 2).copied().unwrap_or(0),
        total.too_large,
        total.disagreements
    );
    Ok(total.disagreements == 0)
}

/// Runs `prescient bench merge`.
fn bench_machine() -> Result<bool> {
    let probe = prescient_tools::machine::probe();
    println!("{:>12}  {:>8}", "working set", "load ns");
    for row in &probe.latency {
        println!("{:>9} KiB  {:>8.1}", row.bytes >> 10, row.load_ns);
    }
    match probe.round_trip_ns {
        Some(ns) => println!("round trip between two threads: {ns:.0} ns"),
        None => println!("round trip between two threads: not measured (no second thread ran)"),
    }
    match probe.compute_scaling {
        Some(x) => println!("two threads computed {x:.2}x this thread's hashes alone (2 on two equal free cores)"),
        None => println!("two threads' compute: not measured (no second thread ran)"),
    }
    Ok(true)
}

fn bench_merge(data: Option<PathBuf>, numbers: &[u64], max: usize, reps: usize) -> Result<bool> {
    let dir = locate_data_dir(data.as_deref())?;
    let dataset = Dataset::open(&dir).wrap_err_with(|| format!("opening {}", dir.display()))?;
    ir::warm_up();
    println!(
        "{:>8}  {:>3}  {:>5}  {:>10}  {:>10}  {:>13}  {:>6}  {:>10}",
        "block", "k", "txs", "alone ns", "merged ns", "one by one ns", "ratio", "code share"
    );
    for n in numbers {
        let block = dataset.load(dataset.find(*n)?)?;
        for row in prescient_tools::bench::merge(&block, max.clamp(1, 64), reps)? {
            println!(
                "{:>8}  {:>3}  {:>5}  {:>10.0}  {:>10.0}  {:>13.0}  {:>5.2}x  {:>10.2}",
                n,
                row.k,
                row.txs,
                row.single_ns,
                row.merged_ns,
                row.sequential_ns,
                row.merged_ns / row.single_ns.max(1.0),
                row.code_share
            );
        }
    }
    Ok(true)
}

/// Runs `prescient replay`; `Ok(false)` when a check failed or an executor differed from
/// sequential revm.
fn replay(
    data: Option<PathBuf>,
    numbers: &[u64],
    config: &prescient_tools::replay::ModeConfig,
    json: Option<&std::path::Path>,
    no_progress: bool,
) -> Result<bool> {
    let dir = locate_data_dir(data.as_deref())?;
    let dataset = Dataset::open(&dir).wrap_err_with(|| format!("opening {}", dir.display()))?;
    let selected = if numbers.is_empty() {
        dataset.complete_blocks().cloned().collect::<Vec<_>>()
    } else {
        numbers.iter().map(|n| dataset.find(*n).cloned()).collect::<Result<Vec<_>, _>>()?
    };
    eyre::ensure!(!selected.is_empty(), "{} lists no complete block", dir.display());
    ir::warm_up();
    // The accelerated mode's predictor takes its fee-recipient candidates from the other blocks.
    let mut config = config.clone();
    if config.mode == Mode::Accelerated {
        eyre::ensure!((0.0..=1.0).contains(&config.heard), "--heard must be within 0..=1");
        config.recipients = std::sync::Arc::new(prescient_tools::evaluate::recorded_recipients(&dataset, |_| {})?);
        let arrivals = dataset.arrivals()?;
        config.arrivals = (!arrivals.is_empty())
            .then(|| std::sync::Arc::new(prescient_tools::evaluate::recorded_arrivals(&arrivals)));
    }
    let config = &config;

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
    let mut timings = Vec::new();
    // What two threads can gain over one on this machine now, before and after the blocks (a
    // VM's vCPUs may share a host core some of the time: see `machine`).
    let scaling = || {
        (config.mode != Mode::Sequential)
            .then(|| prescient_tools::machine::compute_scaling(std::time::Duration::from_millis(100)))
            .flatten()
    };
    let scaling_before = scaling();
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
        let timed = (config.mode != Mode::Sequential).then(|| compare_mode(&block, config));
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
            if let Some(timed) = &timed {
                match &timed.mismatch {
                    Some(why) => println!("{:>10}  {:?} MISMATCH: {why}", "", config.mode),
                    None => println!(
                        "{:>10}  {:?}: sequential {:.3} ms, {:.3} ms, {:.2}x{}",
                        "",
                        config.mode,
                        timed.sequential_ms,
                        timed.mode_ms,
                        timed.ratio,
                        timed.parallel.as_ref().map_or(String::new(), |p| format!(
                            " ({} speculative, {} executed again, {} in order{}{}{}{}{})",
                            p.speculative,
                            p.reexecuted,
                            p.in_order,
                            if p.taken_over > 0 { format!(", {} taken over", p.taken_over) } else { String::new() },
                            if p.hot > 0 { format!(", {} hot, {} waits", p.hot, p.waits) } else { String::new() },
                            if p.unknown_waits > 0 {
                                format!(", {} waited for unknown writes", p.unknown_waits)
                            } else {
                                String::new()
                            },
                            if p.sequential { ", sequential" } else { "" },
                            p.stopped_at.map_or(String::new(), |at| format!(", stopped at {at}"))
                        )) + &timed
                            .compute_scaling
                            .map_or(String::new(), |x| format!(" (two threads computed {x:.2}x one)"))
                            + &timed
                                .hits
                                .map_or(String::new(), |h| format!(" ({h} of {} through a program)", timed.txs))
                    ),
                }
            }
        });
        timings.extend(timed);
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
    let mut mismatches = 0;
    if config.mode != Mode::Sequential {
        let scaling_after = scaling();
        let modes = ModeSummary::of(&timings);
        mismatches = modes.mismatches;
        println!(
            "{:?} {}{}: {:.2}x sequential time-weighted over {} blocks ({:.2}x on the {} blocks of 150 transactions or more), lowest {:.2}x ({:.2}x paired); {} mismatches",
            config.mode,
            match config.mode {
                Mode::Accelerated => format!("at {:.0}% heard", 100.0 * config.heard),
                _ => format!("at {} threads", config.threads),
            },
            if config.latency.is_zero() {
                String::new()
            } else {
                format!(", {} µs per cold read", config.latency.as_micros())
            },
            modes.speedup,
            modes.blocks,
            modes.speedup_150,
            modes.blocks_150,
            modes.lowest,
            modes.lowest_paired,
            modes.mismatches
        );
        let shown = |x: Option<f64>| x.map_or("not measured".to_string(), |x| format!("{x:.2}x"));
        println!(
            "two threads computed {} this thread's work alone before the blocks, {} after (2x on two equal free cores)",
            shown(scaling_before),
            shown(scaling_after)
        );
        if let Some(path) = json {
            let value = serde_json::json!({
                "mode": config.mode,
                "threads": config.threads,
                "latency_us": config.latency.as_micros() as u64,
                "reps": config.reps,
                "min_ms": config.min_time.as_millis() as u64,
                "summary": modes,
                "mismatches": modes.mismatches,
                "compute_scaling_before": scaling_before,
                "compute_scaling_after": scaling_after,
                "blocks": timings,
            });
            std::fs::write(path, serde_json::to_string_pretty(&value)?)
                .wrap_err_with(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(failed == 0 && mismatches == 0)
}
