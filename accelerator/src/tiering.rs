//! Tiering: an accelerated program is served by the compact evaluator as soon as it is
//! stored, and by native code ([`jit::Native`]) once a background worker has compiled it.
//!
//! - **Worker.** One thread, fed through a bounded queue of weak references: a program
//!   replaced or evicted before its turn is skipped, and a full queue drops the job
//!   (counted; the evaluator keeps serving that program).
//! - **Time budget.** [`jit::Limits`] refuses programs whose size would make the compile
//!   long (the evaluator serves them); compile times are exported as a histogram.
//! - **Memory budget.** Machine code is counted in pages against `max_code_bytes`; at the
//!   budget, compiles are refused (counted). Code is freed with the last accelerated program
//!   that holds it, and its pages are returned to the budget then.
//! - **Failures.** Anything but success is counted by reason and leaves the program to the
//!   evaluator: a Cranelift error is a bug, never a wrong result.

use std::sync::{
    Arc, OnceLock, Weak,
    atomic::{AtomicUsize, Ordering},
    mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
};

use crate::{metrics, store::Accelerated};

/// The page size code is counted in (each program's code is mapped on pages of its own).
const PAGE: usize = 4096;

/// Machine code bytes in use, against a maximum.
#[derive(Debug)]
pub struct CodeBudget {
    max_bytes: usize,
    used: AtomicUsize,
}

impl CodeBudget {
    /// A budget of `max_bytes` of code pages.
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self { max_bytes, used: AtomicUsize::new(0) })
    }

    /// Bytes of code pages held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.max_bytes)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        ::metrics::gauge!(metrics::JIT_CODE_BYTES).set(self.used() as f64);
    }
}

/// Native code of one accelerated program, holding its pages of the budget until dropped.
#[derive(Debug)]
pub struct NativeCode {
    native: jit::Native,
    pages: usize,
    budget: Arc<CodeBudget>,
}

impl NativeCode {
    /// The compiled code.
    pub fn native(&self) -> &jit::Native {
        &self.native
    }
}

impl Drop for NativeCode {
    fn drop(&mut self) {
        self.budget.release(self.pages);
    }
}

/// Where an accelerated program's native code goes once compiled (shared by the copies of
/// an accelerated program that hold the same tree).
pub type NativeSlot = Arc<OnceLock<NativeCode>>;

/// Why a program has no native code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCompiled {
    /// Its tree did not compile for the evaluator either.
    NoTree,
    /// Past [`jit::Limits`].
    TooLarge,
    /// Below [`jit::Limits::min_instructions`]: the evaluator is faster on it at import.
    TooSmall,
    /// The code budget is spent.
    Budget,
    /// Cranelift or the host refused it (a bug).
    Error,
}

impl NotCompiled {
    /// The metric label.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NoTree => "no_tree",
            Self::TooLarge => "too_large",
            Self::TooSmall => "too_small",
            Self::Budget => "budget",
            Self::Error => "error",
        }
    }
}

/// Compiles `accelerated`'s tree to native code now and stores it in its slot (on this
/// thread: what the worker runs, and what offline evaluation runs directly). Returns the
/// compile time and code size on success. A slot already filled is left as it is.
pub fn compile(
    accelerated: &Accelerated,
    limits: &jit::Limits,
    budget: &Arc<CodeBudget>,
) -> Result<(std::time::Duration, usize), NotCompiled> {
    // Queued twice (a copy of the same tree stored meanwhile): nothing to do or count.
    if let Some(code) = accelerated.native.get() {
        return Ok((code.native.compile_time(), code.native.code_bytes()));
    }
    let result = compile_inner(accelerated, limits, budget);
    match &result {
        Ok((time, _)) => {
            ::metrics::counter!(metrics::JIT_COMPILED).increment(1);
            ::metrics::histogram!(metrics::JIT_COMPILE_SECONDS).record(time.as_secs_f64());
            ::metrics::gauge!(metrics::JIT_CODE_BYTES).set(budget.used() as f64);
        }
        Err(why) => ::metrics::counter!(metrics::JIT_NOT_COMPILED, "reason" => why.name()).increment(1),
    }
    result
}

fn compile_inner(
    accelerated: &Accelerated,
    limits: &jit::Limits,
    budget: &Arc<CodeBudget>,
) -> Result<(std::time::Duration, usize), NotCompiled> {
    let compiled = accelerated.compiled.clone().ok_or(NotCompiled::NoTree)?;
    let native = jit::Native::compile(compiled, limits).map_err(|e| match e {
        jit::JitError::TooLarge(_) => NotCompiled::TooLarge,
        jit::JitError::TooSmall(_) => NotCompiled::TooSmall,
        e => {
            tracing::warn!(%e, "native compile failed; the evaluator serves the program");
            NotCompiled::Error
        }
    })?;
    // Code and its read-only data each take pages of their own.
    let pages = native.code_bytes().div_ceil(PAGE).max(1) * PAGE + PAGE;
    if !budget.try_take(pages) {
        return Err(NotCompiled::Budget);
    }
    let (time, bytes) = (native.compile_time(), native.code_bytes());
    let code = NativeCode { native, pages, budget: budget.clone() };
    // Another compile of the same slot may have won: its code is kept, this one dropped
    // (and its pages returned).
    let _ = accelerated.native.set(code);
    Ok((time, bytes))
}

/// The background compiler (see the module docs). Dropping it stops the worker once its
/// queue is drained.
#[derive(Debug, Clone)]
pub struct Compiler {
    queue: SyncSender<Weak<Accelerated>>,
    budget: Arc<CodeBudget>,
}

impl Compiler {
    /// Starts the worker thread with `limits`, `max_code_bytes` of code and a queue of
    /// `queue` programs.
    pub fn spawn(limits: jit::Limits, max_code_bytes: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(queue.max(1));
        let budget = CodeBudget::new(max_code_bytes);
        let worker_budget = budget.clone();
        std::thread::Builder::new().name("prescient-jit".into()).spawn(move || work(&rx, &limits, &worker_budget))?;
        Ok(Self { queue: tx, budget })
    }

    /// Queues `accelerated` for compilation (dropped, counted, when the queue is full).
    pub fn submit(&self, accelerated: &Arc<Accelerated>) {
        if accelerated.native.get().is_some() || accelerated.compiled.is_none() {
            return;
        }
        match self.queue.try_send(Arc::downgrade(accelerated)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => ::metrics::counter!(metrics::JIT_DROPPED).increment(1),
            Err(TrySendError::Disconnected(_)) => {
                tracing::warn!("the native compiler stopped; the evaluator serves every program")
            }
        }
    }

    /// The code budget.
    pub fn budget(&self) -> &Arc<CodeBudget> {
        &self.budget
    }
}

fn work(rx: &Receiver<Weak<Accelerated>>, limits: &jit::Limits, budget: &Arc<CodeBudget>) {
    while let Ok(job) = rx.recv() {
        // Replaced or evicted since: nobody would run the code.
        let Some(accelerated) = job.upgrade() else { continue };
        // A panic inside Cranelift must not take the worker down; the program stays with
        // the evaluator.
        let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            compile(&accelerated, limits, budget).map(|_| ())
        }));
        if compiled.is_err() {
            ::metrics::counter!(metrics::JIT_NOT_COMPILED, "reason" => NotCompiled::Error.name()).increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(k: u64) -> ir::program::Program {
        let text = format!(
            "env OSAKA chain 1\nstatus {{\"Success\":\"Stop\"}}\ngas 21000 refund 0\nv0 = const 0x77\nv1 = load.storage \
             v0, v0\nv2 = const {k:#x}\nv3 = add v1, v2\nv4 = load.balance v0\nv5 = load.nonce v0\nv6 = \
             load.codehash v0\n    store.account v0, v4, v5, v6\n    store.slot v0, v0, v3\n"
        );
        ir::text::parse(&text).expect("parses")
    }

    #[test]
    fn the_worker_compiles_in_the_background_within_the_budget_and_frees_the_pages() {
        let compiler = Compiler::spawn(jit::Limits::any_size(), 3 * 2 * PAGE, 8).expect("a thread");
        let all: Vec<Arc<Accelerated>> =
            (0..4).map(|k| Arc::new(Accelerated::new(vec![Arc::new(program(k))]))).collect();
        for a in &all {
            compiler.submit(a);
        }
        // The worker is asynchronous: wait for it to settle (bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while all.iter().filter(|a| a.native.get().is_some()).count() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let compiled = all.iter().filter(|a| a.native.get().is_some()).count();
        // A small program takes one code page and one data page: three fit, the fourth not.
        assert_eq!(compiled, 3, "budget {:?}", compiler.budget());
        assert_eq!(compiler.budget().used(), 3 * 2 * PAGE);
        // The code is freed with its program, and its pages are back in the budget.
        let first = all.iter().find(|a| a.native.get().is_some()).expect("one compiled").clone();
        drop(all);
        assert_eq!(compiler.budget().used(), 2 * PAGE, "only `first` holds code now");
        drop(first);
        assert_eq!(compiler.budget().used(), 0);
    }

    #[test]
    fn a_program_replaced_before_its_turn_is_skipped() {
        let budget = CodeBudget::new(1 << 20);
        let (tx, rx) = sync_channel(4);
        let gone = Arc::new(Accelerated::new(vec![Arc::new(program(1))]));
        let kept = Arc::new(Accelerated::new(vec![Arc::new(program(2))]));
        tx.send(Arc::downgrade(&gone)).expect("queued");
        tx.send(Arc::downgrade(&kept)).expect("queued");
        drop(gone);
        drop(tx);
        work(&rx, &jit::Limits::any_size(), &budget);
        assert!(kept.native.get().is_some());
        assert_eq!(budget.used(), 2 * PAGE, "only the live program was compiled");
    }

    #[test]
    fn outside_the_limits_the_evaluator_keeps_the_program() {
        let budget = CodeBudget::new(1 << 20);
        let a = Accelerated::new(vec![Arc::new(program(1))]);
        let limits = jit::Limits { max_instructions: 1, ..jit::Limits::any_size() };
        assert_eq!(compile(&a, &limits, &budget), Err(NotCompiled::TooLarge));
        assert_eq!(compile(&a, &jit::Limits::default(), &budget), Err(NotCompiled::TooSmall));
        assert!(a.native.get().is_none());
        assert_eq!(budget.used(), 0);
    }
}
