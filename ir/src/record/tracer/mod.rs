//! The tracer: a revm `Inspector` that shadows the interpreter with symbolic values.
//!
//! ```text
//!   step(op)      check: symbolic stack == revm's stack (traced values)   ─┐ a mismatch
//!                 apply op symbolically: pop inputs, guard what decides     │ aborts the
//!                 the path, push results (or defer to step_end)             │ recording:
//!   step_end      push results only revm knows (PUSH immediates, GAS)       │ no program,
//!   call()        new frame; world checkpoint; value transfer               │ never a
//!   call_end()    pop frame; restore the checkpoint on failure; push the    │ wrong one
//!                 success flag, return data and copied output to the parent ┘
//! ```
//!
//! Every guard says why it is needed and why it is enough. Every opcode in revm's table is
//! modelled (`tests/it/opcodes.rs` runs each one under every fork); an opcode the tracer does
//! not know must be one revm halts on (undefined, or not active under the spec), which
//! `step_end` checks. What is not modelled (EXTCODECOPY of a delegation designator, traces
//! over the size caps, any disagreement with revm) aborts with a counted reason.

use revm::{
    DatabaseRef, Inspector,
    bytecode::opcode as op,
    context::{ContextTr, JournalTr},
    interpreter::{
        CallInputs, CallOutcome, CallScheme, CreateInputs, CreateOutcome, Interpreter,
        interpreter::EthInterpreter,
        interpreter_types::{Jumps, MemoryTr},
    },
    primitives::{Address, Bytes, KECCAK_EMPTY, U256},
};

use super::{
    NoApReason,
    memory::{Memory, bytes_len},
    world::{Lowering, World},
};
use crate::{
    ops::{GuardKind, Op},
    program::{Imm, Value},
    semantics::{Val, word_to_address},
};

mod calls;
mod create;
mod opcodes;
mod selfdestruct;

/// The most operands an opcode takes (CALL: 7).
const MAX_OPERANDS: usize = 8;

/// The largest memory offset or size the tracer follows (see `pin_usize`).
const MAX_MEMORY: usize = 32 << 20;

/// The identity precompile, modelled exactly (its output is its input).
const IDENTITY: Address = Address::with_last_byte(4);

/// A frame being executed.
#[derive(Debug)]
struct Frame {
    stack: Vec<Value>,
    memory: Memory,
    /// Storage and balance context (`ADDRESS`).
    address: Address,
    address_v: Value,
    caller_v: Value,
    value_v: Value,
    calldata: Value,
    code: Bytes,
    return_data: Value,
    /// Set by RETURN / REVERT.
    output: Option<Value>,
    /// Where the parent wants the output copied.
    ret: (usize, usize),
    /// For an init-code frame: the account being created (address, symbolic address), or
    /// `None` when creation failed before the frame could run (depth, funds, collision).
    create: Option<CreateFrame>,
}

/// What a creation frame needs at its end.
#[derive(Debug, Clone, Copy)]
enum CreateFrame {
    /// The init code runs for the account at this address.
    Running(Address, Value),
    /// Creation failed before any code ran.
    Failed,
}

/// What a CREATE / CREATE2 instruction left for the `create` hook.
#[derive(Debug)]
struct PendingCreate {
    value_v: Value,
    initcode: Value,
    salt: Option<Value>,
}

/// What a CALL-family instruction left for the `call` hook.
#[derive(Debug)]
struct PendingCall {
    scheme: CallScheme,
    target: Address,
    target_v: Value,
    value_v: Value,
    calldata: Value,
    ret: (usize, usize),
}

/// The top-level call, as the transaction describes it.
#[derive(Debug)]
pub(crate) struct TopCall {
    pub(crate) caller_v: Value,
    pub(crate) to: Address,
    pub(crate) to_v: Value,
    pub(crate) value_v: Value,
    pub(crate) calldata: Value,
}

/// The inspector. Holds the whole recording state while revm runs.
pub(crate) struct Tracer<'a, D> {
    pub(crate) low: Lowering<'a, D>,
    top: TopCall,
    frames: Vec<Frame>,
    snapshots: Vec<World>,
    pending_call: Option<PendingCall>,
    pending_create: Option<PendingCreate>,
    /// Push revm's top of stack at `step_end` (PUSH immediates, GAS, PC).
    push_concrete: bool,
    /// The step was not applied because revm must halt on it (an opcode the tracer does not
    /// model, a stack underflow or overflow, memory beyond what any block can pay for):
    /// `step_end` requires the halt, and otherwise stops with this reason.
    expect_halt: Option<(NoApReason, String)>,
    pub(crate) abort: Option<(NoApReason, String)>,
    pub(crate) top_output: Option<Value>,
    /// The address a top-level creation deployed to.
    pub(crate) top_created: Option<Value>,
    pub(crate) steps: u64,
    max_insts: usize,
    max_steps: u64,
    /// A line per step, when `RecordConfig::log_steps` asks for it.
    pub(crate) log: Option<Vec<String>>,
}

impl<'a, D: DatabaseRef> Tracer<'a, D> {
    pub(crate) fn new(low: Lowering<'a, D>, top: TopCall, max_insts: usize, max_steps: u64) -> Self {
        Self {
            low,
            top,
            frames: Vec::new(),
            snapshots: Vec::new(),
            pending_call: None,
            pending_create: None,
            push_concrete: false,
            expect_halt: None,
            abort: None,
            top_output: None,
            top_created: None,
            steps: 0,
            max_insts,
            max_steps,
            log: None,
        }
    }

    fn stop(&mut self, reason: NoApReason, why: impl Into<String>) {
        if self.abort.is_none() {
            self.abort = Some((reason, why.into()));
        }
    }

    /// A constant `usize` for an offset or size: pinned when it came from data. Memory
    /// layout (and so memory-expansion gas and which bytes are read) then equals the trace's.
    fn pin_usize(&mut self, v: Value) -> Option<usize> {
        self.low.b.guard(GuardKind::Memory, v);
        let w = self.low.b.traced_word(v);
        // Memory this large costs more gas than any block holds (expanding to 32 MiB costs
        // over 2 * 10^9 gas), so revm is about to halt. Refuse rather than allocate: a
        // hostile offset must never make the tracer allocate what revm never would.
        if w > U256::from(MAX_MEMORY) {
            // The value is pinned just above; if revm halts on this step the halt is the
            // path (`step_end` checks it). If it does not (a large calldata offset with no
            // memory touched, say), no program.
            self.expect_halt = Some((NoApReason::TooLarge, "memory access beyond 32 MiB".into()));
            return None;
        }
        Some(w.to::<usize>())
    }

    fn frame(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("steps run inside a frame")
    }

    fn pop(&mut self) -> Option<Value> {
        let v = self.frame().stack.pop();
        if v.is_none() {
            self.stop(NoApReason::Unmodelled, "symbolic stack underflow");
        }
        v
    }

    fn pop_n<const N: usize>(&mut self) -> Option<[Value; N]> {
        let mut out = [Value(0); N];
        for slot in &mut out {
            *slot = self.pop()?;
        }
        Some(out)
    }

    fn push(&mut self, v: Value) {
        self.frame().stack.push(v);
    }

    /// Compares the symbolic stack with revm's: any difference is a tracer bug or an
    /// unmodelled case, and ends the recording (no program rather than a wrong one).
    fn check_stack(&mut self, concrete: &[U256]) -> bool {
        let frame = self.frames.last().expect("inside a frame");
        if frame.stack.len() != concrete.len() {
            let msg = format!("stack depth {} vs revm's {}", frame.stack.len(), concrete.len());
            self.stop(NoApReason::Unmodelled, msg);
            return false;
        }
        for (i, (v, c)) in frame.stack.iter().zip(concrete).enumerate() {
            if self.low.b.traced_word(*v) != *c {
                let msg = format!("stack[{i}] = {} traced, revm has {c}", self.low.b.traced_word(*v));
                self.stop(NoApReason::Unmodelled, msg);
                return false;
            }
        }
        true
    }

    /// An address taken from a stack word: its low 160 bits, as the EVM reads it, with the
    /// concrete address it names in this trace.
    fn address_operand(&mut self, word: Value) -> (Address, Value) {
        let mask = self.low.b.word(address_mask());
        let v = self.low.b.compute(Op::And, &[word, mask]);
        (word_to_address(self.low.b.traced_word(v)), v)
    }

    fn read_memory(&mut self, offset: usize, len: usize) -> Value {
        let frame = self.frames.last_mut().expect("inside a frame");
        frame.memory.read(&mut self.low.b, offset, len)
    }
}

/// The low 160 bits: how the EVM reads an address from a word.
fn address_mask() -> U256 {
    (U256::from(1) << 160) - U256::from(1)
}

impl<CTX: ContextTr, D: DatabaseRef> Inspector<CTX, EthInterpreter> for Tracer<'_, D> {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, _context: &mut CTX) {
        if self.abort.is_some() || self.frames.is_empty() {
            return;
        }
        self.steps += 1;
        if self.steps > self.max_steps {
            self.stop(NoApReason::TooLarge, "trace over the step budget");
            return;
        }
        if self.low.b.len() > self.max_insts {
            self.stop(NoApReason::TooLarge, "trace over the size cap");
            return;
        }
        if !self.check_stack(interp.stack.data()) {
            return;
        }
        // The memory size is a constant of the path; a difference is a modelling bug.
        if interp.memory.size() != self.frame().memory.len() {
            let msg = format!("memory size {} vs revm's {}", self.frame().memory.len(), interp.memory.size());
            self.stop(NoApReason::Unmodelled, msg);
            return;
        }
        let opcode = interp.bytecode.opcode();
        let pc = interp.bytecode.pc();
        // A stack underflow or overflow halts the frame before the opcode does anything: the
        // stack depth is a constant of the path (checked against revm's above).
        let mut operands = [Value(0); MAX_OPERANDS];
        let mut inputs = 0;
        if let Some(info) = revm::bytecode::opcode::OpCode::new(opcode).map(|o| o.info()) {
            let depth = self.frame().stack.len();
            inputs = info.inputs() as usize;
            if depth < inputs || depth - inputs + info.outputs() as usize > revm::interpreter::STACK_LIMIT {
                self.expect_halt = Some((NoApReason::Unmodelled, "stack underflow or overflow revm ran".into()));
                return;
            }
            // The step's operands, before `apply` pops them (see below).
            let stack = &self.frame().stack;
            for (slot, v) in operands.iter_mut().zip(stack.iter().rev().take(inputs)) {
                *slot = *v;
            }
        }
        if let Some(log) = &mut self.log {
            let name = revm::bytecode::opcode::OpCode::new(opcode).map_or("UNKNOWN", |o| o.as_str());
            let frame = self.frames.last().expect("checked above");
            let top: Vec<String> = frame.stack.iter().rev().take(3).map(|v| v.to_string()).collect();
            log.push(format!(
                "d{} pc={pc:<5} {name:<14} stack[{}] top {}  (program: {} insts)",
                self.frames.len(),
                frame.stack.len(),
                top.join(" "),
                self.low.b.len()
            ));
        }
        self.push_concrete = false;
        self.expect_halt = None;
        let _ = self.apply(opcode, pc);
        if matches!(self.expect_halt, Some((NoApReason::TooLarge, _))) {
            // revm is expected to halt on this step for its memory (checked at `step_end`).
            // `apply` stopped at the first operand too large to follow, so later operands
            // (a copy's size, say) may not be pinned, and with another value revm might not
            // halt. Pin every operand: with all of them, the path and so the gas left equal,
            // the step does what it did here.
            if inputs > MAX_OPERANDS {
                self.stop(NoApReason::TooLarge, "memory access beyond 32 MiB");
                return;
            }
            for v in &operands[..inputs] {
                self.low.b.guard(GuardKind::Memory, *v);
            }
        }
    }

    fn step_end(&mut self, interp: &mut Interpreter<EthInterpreter>, _context: &mut CTX) {
        if self.abort.is_some() {
            return;
        }
        if let Some((reason, why)) = self.expect_halt.take() {
            // Any exceptional halt will do: the frame ends, all its gas is consumed and the
            // world rolls back to its checkpoint, whichever check failed first (a static gas
            // charge, the stack, memory, activation). What decided the halt is a constant of
            // the path (stack depth, pinned offsets, spec).
            use revm::interpreter::interpreter_types::LoopControl;
            if !interp.bytecode.instruction_result().is_some_and(|r| r.is_halt()) {
                self.stop(reason, why);
            }
            return;
        }
        if !self.push_concrete {
            return;
        }
        self.push_concrete = false;
        // Only reached for results that are constants of the path (code immediates, GAS).
        // A halted instruction pushes nothing; the frame ends and the value is not needed.
        if let Some(top) = interp.stack.data().last().copied() {
            let v = self.low.b.word(top);
            self.push(v);
        }
    }

    fn call(&mut self, context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        if self.abort.is_some() {
            return None;
        }
        let input_bytes = inputs.input.bytes(context);
        let (frame_ctx, code_address, code_v, transfer) = match self.pending_call.take() {
            None if self.frames.is_empty() => {
                // The top-level call.
                let top = &self.top;
                let frame = (top.to, top.to_v, top.caller_v, top.value_v, top.calldata, (0, 0));
                (frame, top.to, top.to_v, Some(((inputs.caller, top.caller_v), (top.to, top.to_v), top.value_v)))
            }
            None => {
                self.stop(NoApReason::Unmodelled, "a call without a CALL instruction");
                return None;
            }
            Some(p) => {
                let parent = self.frames.last().expect("a pending call has a parent");
                let (parent_addr, parent_v, parent_caller) = (parent.address, parent.address_v, parent.caller_v);
                match p.scheme {
                    CallScheme::Call | CallScheme::StaticCall => (
                        (p.target, p.target_v, parent_v, p.value_v, p.calldata, p.ret),
                        p.target,
                        p.target_v,
                        (p.scheme == CallScheme::Call).then_some((
                            (parent_addr, parent_v),
                            (p.target, p.target_v),
                            p.value_v,
                        )),
                    ),
                    CallScheme::CallCode => (
                        (parent_addr, parent_v, parent_v, p.value_v, p.calldata, p.ret),
                        p.target,
                        p.target_v,
                        Some(((parent_addr, parent_v), (parent_addr, parent_v), p.value_v)),
                    ),
                    CallScheme::DelegateCall => (
                        (parent_addr, parent_v, parent_caller, p.value_v, p.calldata, p.ret),
                        p.target,
                        p.target_v,
                        None,
                    ),
                }
            }
        };
        let (address, address_v, caller_v, value_v, calldata, ret) = frame_ctx;
        // The calldata the callee sees must be what the tracer built.
        if self.low.b.traced(calldata) != Some(&Val::Bytes(input_bytes.clone())) {
            self.stop(NoApReason::Unmodelled, "calldata differs from revm's");
            return None;
        }
        // Which code runs: pin the code hash of the code's account.
        let code_account = self.low.account(code_address, code_v).clone();
        self.low.b.guard(GuardKind::Code, code_account.code_hash);
        // EIP-7702: an account whose code is a delegation designator runs its delegate's
        // code. The pinned hash above fixes the designator (so the delegate's address); the
        // delegate's own code must be pinned too, and its access is warm or cold like any
        // other (the world's aliasing).
        let own_code = match code_account.code.and_then(|c| self.low.b.traced(c).cloned()) {
            Some(Val::Bytes(bytes)) => bytes,
            _ => self.low.code_of(code_address),
        };
        if let Some(delegate) = crate::record::world::delegate_of(&own_code) {
            let delegate_v = self.low.b.word(crate::record::world::word(delegate));
            let delegate_account = self.low.account(delegate, delegate_v).clone();
            self.low.b.guard(GuardKind::Code, delegate_account.code_hash);
            if self.low.b.traced_word(delegate_account.code_hash) != U256::from_be_bytes(inputs.known_bytecode.0.0) {
                self.stop(NoApReason::Unmodelled, "delegate code differs from revm's");
                return None;
            }
        } else if U256::from_be_bytes(inputs.known_bytecode.0.0) != self.low.b.traced_word(code_account.code_hash)
            && !self.low.is_precompile(code_address)
        {
            // The code revm runs must be the one whose hash was pinned.
            self.stop(NoApReason::Unmodelled, "called code differs from the pinned code");
            return None;
        }
        let code = inputs.known_bytecode.1.original_bytes();
        let precompile_output = if self.low.is_precompile(code_address) && code_address != IDENTITY {
            Some(self.precompile(code_address, calldata, inputs.gas_limit)?)
        } else {
            None
        };
        self.snapshots.push(self.low.world.clone());
        if let Some((from, to, value)) = transfer {
            self.transfer(from, to, value);
        }
        let empty = self.low.b.bytes(Bytes::new());
        self.frames.push(Frame {
            stack: Vec::new(),
            memory: Memory::default(),
            address,
            address_v,
            caller_v,
            value_v,
            calldata,
            code,
            return_data: empty,
            output: precompile_output,
            ret,
            create: None,
        });
        None
    }

    fn call_end(&mut self, _context: &mut CTX, inputs: &CallInputs, outcome: &mut CallOutcome) {
        if self.abort.is_some() {
            return;
        }
        self.pending_call = None;
        let Some(frame) = self.frames.pop() else {
            self.stop(NoApReason::Unmodelled, "call_end without a frame");
            return;
        };
        let Some(snapshot) = self.snapshots.pop() else {
            self.stop(NoApReason::Unmodelled, "call_end without a checkpoint");
            return;
        };
        let result = outcome.result.result;
        let output = if outcome.was_precompile_called && inputs.bytecode_address != IDENTITY {
            // Built by `precompile` when the call began; revm's output is checked below.
            frame.output.unwrap_or_else(|| self.low.b.bytes(Bytes::new()))
        } else if inputs.bytecode_address == IDENTITY && outcome.was_precompile_called {
            // The identity precompile returns its input (its gas depends on the length,
            // which is pinned with the memory layout).
            if result.is_ok() { frame.calldata } else { self.low.b.bytes(Bytes::new()) }
        } else if result.is_ok() || result.is_revert() {
            frame.output.unwrap_or_else(|| self.low.b.bytes(Bytes::new()))
        } else {
            self.low.b.bytes(Bytes::new())
        };
        if self.low.b.traced(output) != Some(&Val::Bytes(outcome.result.output.clone())) {
            self.stop(NoApReason::Unmodelled, "frame output differs from revm's");
            return;
        }
        if !result.is_ok() {
            // A failed frame's writes are dropped; its reads (and guards) stay.
            self.low.world = snapshot;
        }
        match self.frames.last_mut() {
            None => self.top_output = Some(output),
            Some(parent) => {
                parent.return_data = output;
                if result.is_ok() || result.is_revert() {
                    let (offset, len) = frame.ret;
                    let n = len.min(bytes_len(&self.low.b, output));
                    parent.memory.write(&self.low.b, offset, output, 0, n);
                }
                let flag = self.low.b.word(U256::from(result.is_ok() as u8));
                parent.stack.push(flag);
            }
        }
    }

    fn create(&mut self, context: &mut CTX, inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        if self.abort.is_some() {
            return None;
        }
        let _ = self.begin_create(context.journal().depth(), inputs);
        None
    }

    fn create_end(&mut self, _context: &mut CTX, _inputs: &CreateInputs, outcome: &mut CreateOutcome) {
        if self.abort.is_some() {
            return;
        }
        let _ = self.end_create(outcome);
    }
}
