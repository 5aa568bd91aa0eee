#![doc = include_str!("../README.md")]

mod lower;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, default_libcall_names};
use ir::{
    backend::AccountRead,
    compact::{Compiled, NativeEntry, PrecompileMemo, evaluation_of},
    interp::{Evaluation, Miss},
    outcome::Applied,
};
use revm::context::{BlockEnv, CfgEnv};

/// [`Limits::min_instructions`]'s default.
pub const MIN_INSTRUCTIONS: usize = 400;

/// [`Limits::min_segment`]'s default.
pub const MIN_SEGMENT: usize = 6;

/// What the compiler accepts, so that no program costs more than a bounded compile.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most compact-evaluator instructions a program may have: compile time grows with
    /// it (merged trees of 20,000 took 1.5 s), and the evaluator serves what is larger.
    pub max_instructions: usize,
    /// The most tree nodes.
    pub max_nodes: usize,
    /// The fewest compact-evaluator instructions worth native code. At import a block's
    /// programs run cold: native code is fetched as instructions from memory, several times
    /// the bytes of the evaluator's form, while the evaluator's own code stays hot. On small
    /// programs (a transfer's tree) that costs more than native code saves (measured with
    /// `prescient evaluate`'s whole-block import ratios), so the evaluator serves them.
    pub min_instructions: usize,
    /// Read constants from the register file instead of having them inline, so that no
    /// constant path of the lowering (immediates, limb-wise compares and masks) can hide a bug
    /// of its general path (the tests' second native tier; slower code). Cranelift's
    /// optimizer is off for every program (see `new_module`).
    pub opaque_constants: bool,
    /// The fewest inline instructions a segment (a run of them between host calls) needs to
    /// be native code; a shorter one joins the host runs around it. A host call costs about
    /// what evaluating a few instructions does, so short segments made code (and compile
    /// time) without making hits faster: over the shared data (`prescient evaluate`, 567
    /// programs) native hits were within noise of the evaluator's at every floor from 1 to 6
    /// (10.2x-10.6x against 10.0x-10.5x), and 2-3% slower at 7 and 8, while the compile
    /// median went from 4.6 ms (1) to 2.5 ms (4), 2.0 ms (6) and 1.4 ms (8).
    pub min_segment: usize,
}

impl Limits {
    /// The default limits without the size floor: every program up to the ceiling compiles
    /// (the tests, `prescient bench hit` and `prescient diff` look at code, not at the
    /// policy of which programs import runs natively).
    pub fn any_size() -> Self {
        Self { min_instructions: 0, ..Self::default() }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_instructions: 6_000,
            max_nodes: 4_096,
            min_instructions: MIN_INSTRUCTIONS,
            opaque_constants: false,
            min_segment: MIN_SEGMENT,
        }
    }
}

/// Why a program was not compiled (the compact evaluator serves it).
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// Past [`Limits`].
    #[error("too large to compile: {0}")]
    TooLarge(String),
    /// Below [`Limits::min_instructions`].
    #[error("too small to gain from native code: {0} instructions")]
    TooSmall(usize),
    /// The host is not one Cranelift generates code for, or its settings were refused.
    #[error("no native target: {0}")]
    Target(String),
    /// Cranelift failed (a bug in the lowering, or in Cranelift).
    #[error("cranelift: {0}")]
    Codegen(String),
}

/// Cranelift's view of a compiled program, for `prescient diff`.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// The function in Cranelift IR, as lowered.
    pub clif: String,
    /// The machine code Cranelift emitted, as its disassembly of the lowered instructions.
    pub disassembly: String,
}

/// A merged program compiled to native code: what import runs once the background compiler
/// is done with it. The code is freed when this is dropped.
pub struct Native {
    compiled: Arc<Compiled>,
    /// Owns the code's memory; `None` only while dropping.
    module: Option<JITModule>,
    entry: NativeEntry,
    opaque_constants: bool,
    code_bytes: usize,
    compile_time: Duration,
}

// SAFETY: after `finalize_definitions` the module is never used again except to free its
// memory on drop (which takes `&mut self`); the code it maps is immutable and safe to run
// from any thread, and `entry` is a plain function pointer into it.
unsafe impl Send for Native {}
// SAFETY: as above: shared access only ever calls the immutable code.
unsafe impl Sync for Native {}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Native")
            .field("code_bytes", &self.code_bytes)
            .field("compile_time", &self.compile_time)
            .finish_non_exhaustive()
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: `entry` points into this module's memory, and it is only called through
            // `&self`, so no call is running while `drop` has `&mut self`.
            unsafe { module.free_memory() };
        }
    }
}

impl Native {
    /// Compiles `compiled` to native code.
    pub fn compile(compiled: Arc<Compiled>, limits: &Limits) -> Result<Self, JitError> {
        Self::build(compiled, limits, false).map(|(native, _)| native)
    }

    /// [`Native::compile`], also giving Cranelift's IR and disassembly.
    pub fn compile_with_listing(compiled: Arc<Compiled>, limits: &Limits) -> Result<(Self, Listing), JitError> {
        Self::build(compiled, limits, true)
    }

    fn build(compiled: Arc<Compiled>, limits: &Limits, listing: bool) -> Result<(Self, Listing), JitError> {
        let started = Instant::now();
        if compiled.code_len() > limits.max_instructions {
            return Err(JitError::TooLarge(format!(
                "{} instructions (at most {})",
                compiled.code_len(),
                limits.max_instructions
            )));
        }
        if compiled.code_len() < limits.min_instructions {
            return Err(JitError::TooSmall(compiled.code_len()));
        }
        if compiled.nodes() > limits.max_nodes {
            return Err(JitError::TooLarge(format!("{} tree nodes (at most {})", compiled.nodes(), limits.max_nodes)));
        }
        let mut module = new_module()?;
        let mut ctx = module.make_context();
        ctx.func.signature = lower::entry_signature(&module);
        let id = module
            .declare_function("program", Linkage::Export, &ctx.func.signature)
            .map_err(|e| JitError::Codegen(e.to_string()))?;
        lower::lower(&compiled, &mut ctx.func, module.target_config(), limits);
        let mut out = Listing::default();
        if listing {
            out.clif = ctx.func.display().to_string();
            ctx.set_disasm(true);
        }
        module.define_function(id, &mut ctx).map_err(|e| JitError::Codegen(format!("{e:?}")))?;
        let code_bytes = ctx.compiled_code().map_or(0, |c| c.code_buffer().len());
        if listing {
            out.disassembly = ctx.compiled_code().and_then(|c| c.vcode.clone()).unwrap_or_default();
        }
        module.clear_context(&mut ctx);
        module.finalize_definitions().map_err(|e| JitError::Codegen(e.to_string()))?;
        let code = module.get_finalized_function(id);
        // SAFETY: `lower::lower` generated this function with `NativeEntry`'s signature
        // (`entry_signature`, the platform's C calling convention).
        let entry = unsafe { std::mem::transmute::<*const u8, NativeEntry>(code) };
        let native = Native {
            compiled,
            module: Some(module),
            entry,
            opaque_constants: limits.opaque_constants,
            code_bytes,
            compile_time: started.elapsed(),
        };
        Ok((native, out))
    }

    /// The program it was compiled from.
    pub fn compiled(&self) -> &Arc<Compiled> {
        &self.compiled
    }

    /// Bytes of machine code.
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// How long compiling took (lowering, Cranelift, mapping).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Evaluates the program natively: the result [`Compiled::evaluate_applied`] gives.
    pub fn evaluate_applied<D: AccountRead>(
        &self,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
    ) -> Result<(Applied, usize), Miss> {
        Applied::filled(|out| self.evaluate_into(db, cfg, block, memo, out))
    }

    /// [`Native::evaluate_applied`] into `out`, as [`ir::compact::Compiled::evaluate_into`].
    pub fn evaluate_into<D: AccountRead>(
        &self,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
        out: &mut Applied,
    ) -> Result<usize, Miss> {
        // SAFETY: `entry` was generated from `self.compiled` by `lower::lower`, which follows
        // `ir::compact::native`'s convention, and the module mapping it lives as long as `self`.
        unsafe { self.compiled.evaluate_native(self.entry, self.opaque_constants, db, cfg, block, memo, out) }
    }

    /// [`Native::evaluate_applied`] in the form of [`Compiled::evaluate_merged`].
    pub fn evaluate_merged<D: AccountRead>(
        &self,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
    ) -> (Evaluation, Option<usize>) {
        evaluation_of(self.evaluate_applied(db, cfg, block, memo))
    }
}

/// A module for one program (so its code is freed with it), for the host CPU.
///
/// Without Cranelift's optimizer, and with its single-pass register allocator: register
/// allocation was most of a compile, and the lowering already emits what the optimizer would
/// make of it. Over the shared data (`prescient evaluate`, 567 programs) this took the compile
/// median from 27 to 9 ms and p99 from 244 to about 175 ms, for code of 133 KB at the median
/// instead of 79 KB and the same speed on hits (native 10.05x revm beside the evaluator's
/// 10.02x, against 10.13x / 9.94x before). Turning the optimizer off alone (backtracking
/// allocator kept) gave 21 ms, 201 ms and 75 KB.
fn new_module() -> Result<JITModule, JitError> {
    let target = |e: &dyn std::fmt::Display| JitError::Target(e.to_string());
    let mut flags = settings::builder();
    for (name, value) in [
        ("use_colocated_libcalls", "false"),
        ("is_pic", "false"),
        ("opt_level", "none"),
        ("regalloc_algorithm", "single_pass"),
        // The register file's address stays in it (see `lower::lower`).
        ("enable_pinned_reg", "true"),
        // The lowering emits well-formed IR by construction, and the oracle checks what the
        // code does; Cranelift's IR verifier would add a pass to every compile.
        ("enable_verifier", "false"),
    ] {
        flags.set(name, value).map_err(|e| target(&e))?;
    }
    let isa = cranelift_native::builder()
        .map_err(|e| target(&e))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| target(&e))?;
    Ok(JITModule::new(JITBuilder::with_isa(isa, default_libcall_names())))
}
