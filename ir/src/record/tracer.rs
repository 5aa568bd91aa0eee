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

    fn binary(&mut self, ir: Op) -> Option<()> {
        let [a, b] = self.pop_n::<2>()?;
        let v = self.low.b.compute(ir, &[a, b]);
        self.push(v);
        Some(())
    }

    /// Applies one opcode symbolically, before revm runs it.
    fn apply(&mut self, opcode: u8, pc: usize) -> Option<()> {
        let compute2 = |o: u8| -> Option<Op> {
            Some(match o {
                op::ADD => Op::Add,
                op::MUL => Op::Mul,
                op::SUB => Op::Sub,
                op::DIV => Op::Div,
                op::SDIV => Op::SDiv,
                op::MOD => Op::Mod,
                op::SMOD => Op::SMod,
                op::SIGNEXTEND => Op::SignExtend,
                op::LT => Op::Lt,
                op::GT => Op::Gt,
                op::SLT => Op::SLt,
                op::SGT => Op::SGt,
                op::EQ => Op::Eq,
                op::AND => Op::And,
                op::OR => Op::Or,
                op::XOR => Op::Xor,
                op::BYTE => Op::Byte,
                op::SHL => Op::Shl,
                op::SHR => Op::Shr,
                op::SAR => Op::Sar,
                _ => return None,
            })
        };
        if let Some(ir) = compute2(opcode) {
            return self.binary(ir);
        }
        match opcode {
            op::STOP => {
                let empty = self.low.b.bytes(Bytes::new());
                self.frame().output = Some(empty);
            }
            op::ADDMOD | op::MULMOD => {
                let [a, b, n] = self.pop_n::<3>()?;
                let ir = if opcode == op::ADDMOD { Op::AddMod } else { Op::MulMod };
                let v = self.low.b.compute(ir, &[a, b, n]);
                self.push(v);
            }
            op::EXP => {
                let [base, exponent] = self.pop_n::<2>()?;
                // Gas: EXP costs per byte of the exponent. Pinning the exponent pins that
                // (exponents are almost always constants, and then nothing is emitted).
                self.low.b.guard(GuardKind::Gas, exponent);
                let v = self.low.b.compute(Op::Exp, &[base, exponent]);
                self.push(v);
            }
            op::ISZERO | op::NOT | op::CLZ => {
                let [a] = self.pop_n::<1>()?;
                let ir = match opcode {
                    op::ISZERO => Op::IsZero,
                    op::NOT => Op::Not,
                    _ => Op::Clz,
                };
                let v = self.low.b.compute(ir, &[a]);
                self.push(v);
            }
            op::KECCAK256 => {
                let [offset, len] = self.pop_n::<2>()?;
                let (offset, len) = (self.pin_usize(offset)?, self.pin_usize(len)?);
                let data = self.read_memory(offset, len);
                let v = self.low.b.compute(Op::Keccak, &[data]);
                self.push(v);
            }
            op::ADDRESS => {
                let v = self.frame().address_v;
                self.push(v);
            }
            op::BALANCE => {
                let [a] = self.pop_n::<1>()?;
                let (address, a) = self.address_operand(a);
                let v = self.low.account(address, a).balance;
                self.push(v);
            }
            op::SELFBALANCE => {
                let (address, address_v) = (self.frame().address, self.frame().address_v);
                let v = self.low.account(address, address_v).balance;
                self.push(v);
            }
            op::ORIGIN => {
                let v = self.top.caller_v;
                self.push(v);
            }
            op::CALLER => {
                let v = self.frame().caller_v;
                self.push(v);
            }
            op::CALLVALUE => {
                let v = self.frame().value_v;
                self.push(v);
            }
            op::CALLDATALOAD => {
                let [i] = self.pop_n::<1>()?;
                let i = self.pin_usize(i)?;
                let calldata = self.frame().calldata;
                let bytes = self.low.b.compute_imm(Op::Slice, &[calldata], Imm::Slice(i as u32, 32));
                let v = self.low.b.compute(Op::ToWord, &[bytes]);
                self.push(v);
            }
            op::CALLDATASIZE => {
                let calldata = self.frame().calldata;
                let n = bytes_len(&self.low.b, calldata);
                let v = self.low.b.word(U256::from(n));
                self.push(v);
            }
            op::CALLDATACOPY | op::CODECOPY | op::RETURNDATACOPY => {
                let [dest, offset, len] = self.pop_n::<3>()?;
                let (dest, offset, len) = (self.pin_usize(dest)?, self.pin_usize(offset)?, self.pin_usize(len)?);
                let src = match opcode {
                    op::CALLDATACOPY => self.frame().calldata,
                    op::RETURNDATACOPY => self.frame().return_data,
                    _ => {
                        let code = self.frame().code.clone();
                        self.low.b.bytes(code)
                    }
                };
                let frame = self.frames.last_mut().expect("inside a frame");
                frame.memory.write(&self.low.b, dest, src, offset, len);
            }
            op::CODESIZE => {
                let n = self.frame().code.len();
                let v = self.low.b.word(U256::from(n));
                self.push(v);
            }
            op::GASPRICE => {
                let v = self.low.price;
                self.push(v);
            }
            op::EXTCODESIZE | op::EXTCODEHASH => {
                let [a] = self.pop_n::<1>()?;
                let (address, a) = self.address_operand(a);
                let account = self.low.account(address, a).clone();
                // Which code is there decides both results: pin it.
                self.low.b.guard(GuardKind::Code, account.code_hash);
                if opcode == op::EXTCODEHASH {
                    // EXTCODEHASH is 0 for an empty account: pin emptiness, which depends
                    // on the current balance and nonce.
                    let used = self.low.b.compute(Op::Or, &[account.balance, account.nonce]);
                    let no_funds = self.low.b.compute(Op::IsZero, &[used]);
                    self.low.b.guard(GuardKind::Path, no_funds);
                }
                // The result is then a constant; revm's value is checked at the next step.
                self.push_concrete = true;
            }
            op::RETURNDATASIZE => {
                let data = self.frame().return_data;
                let n = bytes_len(&self.low.b, data);
                let v = self.low.b.word(U256::from(n));
                self.push(v);
            }
            op::BLOCKHASH => {
                let [n] = self.pop_n::<1>()?;
                let v = self.low.load(Op::BlockHash, &[n]);
                self.push(v);
            }
            op::COINBASE
            | op::TIMESTAMP
            | op::NUMBER
            | op::DIFFICULTY
            | op::GASLIMIT
            | op::BASEFEE
            | op::BLOBBASEFEE => {
                let ir = match opcode {
                    op::COINBASE => Op::Coinbase,
                    op::TIMESTAMP => Op::Timestamp,
                    op::NUMBER => Op::Number,
                    op::DIFFICULTY => Op::Random,
                    op::GASLIMIT => Op::GasLimit,
                    op::BASEFEE => Op::BaseFee,
                    _ => Op::BlobBaseFee,
                };
                let v = self.low.load(ir, &[]);
                self.push(v);
            }
            op::CHAINID => {
                let v = self.low.b.word(U256::from(self.low.cfg.chain_id));
                self.push(v);
            }
            op::BLOBHASH => {
                let [i] = self.pop_n::<1>()?;
                // The index selects a transaction constant: pin it.
                self.low.b.guard(GuardKind::Path, i);
                self.push_concrete = true;
            }
            op::POP => {
                self.pop()?;
            }
            op::MLOAD => {
                let [offset] = self.pop_n::<1>()?;
                let offset = self.pin_usize(offset)?;
                let frame = self.frames.last_mut().expect("inside a frame");
                let v = frame.memory.read_word(&mut self.low.b, offset);
                self.push(v);
            }
            op::MSTORE | op::MSTORE8 => {
                let [offset, value] = self.pop_n::<2>()?;
                let offset = self.pin_usize(offset)?;
                let frame = self.frames.last_mut().expect("inside a frame");
                if opcode == op::MSTORE {
                    frame.memory.write_word(&mut self.low.b, offset, value);
                } else {
                    frame.memory.write_byte(&mut self.low.b, offset, value);
                }
            }
            op::MCOPY => {
                let [dest, src, len] = self.pop_n::<3>()?;
                let (dest, src, len) = (self.pin_usize(dest)?, self.pin_usize(src)?, self.pin_usize(len)?);
                self.frame().memory.copy_within(dest, src, len);
            }
            op::SLOAD | op::TLOAD => {
                let [key] = self.pop_n::<1>()?;
                let (address, address_v) = (self.frame().address, self.frame().address_v);
                self.low.account(address, address_v);
                let k = self.low.b.traced_word(key);
                let v = self.low.slot(address, k, key, opcode == op::TLOAD).current;
                self.push(v);
            }
            op::SSTORE | op::TSTORE => {
                let [key, value] = self.pop_n::<2>()?;
                let (address, address_v) = (self.frame().address, self.frame().address_v);
                self.low.account(address, address_v);
                let k = self.low.b.traced_word(key);
                let slot = self.low.slot(address, k, key, opcode == op::TSTORE).clone();
                if opcode == op::SSTORE {
                    // Gas and refund of SSTORE depend on how original, current and new
                    // values relate (EIP-2200/3529: equalities and zero-ness; before
                    // Istanbul: zero-ness of current and new). Pinning all six relations
                    // decides every rule of every fork; the values stay free.
                    let b = &mut self.low.b;
                    for (x, y) in [(slot.original, slot.current), (slot.current, value), (slot.original, value)] {
                        let same = b.compute(Op::Eq, &[x, y]);
                        b.guard(GuardKind::Gas, same);
                    }
                    for x in [slot.original, slot.current, value] {
                        let zero = b.compute(Op::IsZero, &[x]);
                        b.guard(GuardKind::Gas, zero);
                    }
                }
                self.low.slot(address, k, key, opcode == op::TSTORE).current = value;
            }
            op::JUMP => {
                let [dest] = self.pop_n::<1>()?;
                // A dynamic jump target decides the path.
                self.low.b.guard(GuardKind::Path, dest);
            }
            op::JUMPI => {
                let [dest, cond] = self.pop_n::<2>()?;
                self.low.b.guard(GuardKind::Path, dest);
                // The branch taken decides the path; pinning whether the condition is zero
                // is exactly that decision and leaves its value free.
                let zero = self.low.b.compute(Op::IsZero, &[cond]);
                self.low.b.guard(GuardKind::Path, zero);
            }
            op::PC => {
                let v = self.low.b.word(U256::from(pc));
                self.push(v);
            }
            op::MSIZE => {
                let n = self.frame().memory.len();
                let v = self.low.b.word(U256::from(n));
                self.push(v);
            }
            op::GAS => {
                // Gas is a constant of the path: every dynamic cost's predicate is guarded.
                self.push_concrete = true;
            }
            op::JUMPDEST => {}
            op::PUSH0 => {
                let v = self.low.b.word(U256::ZERO);
                self.push(v);
            }
            o if (op::PUSH1..=op::PUSH32).contains(&o) => {
                // Immediates are code, and code is pinned by its hash.
                self.push_concrete = true;
            }
            o if (op::DUP1..=op::DUP16).contains(&o) => {
                let n = (o - op::DUP1 + 1) as usize;
                let stack = &self.frame().stack;
                let Some(v) = stack.len().checked_sub(n).map(|i| stack[i]) else {
                    self.stop(NoApReason::Unmodelled, "DUP underflow");
                    return None;
                };
                self.push(v);
            }
            o if (op::SWAP1..=op::SWAP16).contains(&o) => {
                let n = (o - op::SWAP1 + 1) as usize;
                let stack = &mut self.frame().stack;
                let top = stack.len().checked_sub(1);
                match (top, top.and_then(|t| t.checked_sub(n))) {
                    (Some(t), Some(other)) => stack.swap(t, other),
                    _ => {
                        self.stop(NoApReason::Unmodelled, "SWAP underflow");
                        return None;
                    }
                }
            }
            o if (op::LOG0..=op::LOG4).contains(&o) => {
                let [offset, len] = self.pop_n::<2>()?;
                let (offset, len) = (self.pin_usize(offset)?, self.pin_usize(len)?);
                let mut topics = Vec::new();
                for _ in 0..(o - op::LOG0) {
                    topics.push(self.pop()?);
                }
                let data = self.read_memory(offset, len);
                let address = self.frame().address_v;
                self.low.world.logs.push(super::world::SymLog { address, data, topics });
            }
            op::CALL | op::CALLCODE | op::DELEGATECALL | op::STATICCALL => self.call_instruction(opcode)?,
            op::RETURN | op::REVERT => {
                let [offset, len] = self.pop_n::<2>()?;
                let (offset, len) = (self.pin_usize(offset)?, self.pin_usize(len)?);
                let data = self.read_memory(offset, len);
                self.frame().output = Some(data);
            }
            op::INVALID => {}
            op::CREATE | op::CREATE2 => {
                let [value_v, offset, len] = self.pop_n::<3>()?;
                let salt = if opcode == op::CREATE2 { Some(self.pop()?) } else { None };
                let (offset, len) = (self.pin_usize(offset)?, self.pin_usize(len)?);
                let initcode = self.read_memory(offset, len);
                self.pending_create = Some(PendingCreate { value_v, initcode, salt });
            }
            op::SELFDESTRUCT => self.selfdestruct()?,
            op::EXTCODECOPY => {
                let [a, dest, offset, len] = self.pop_n::<4>()?;
                let (address, a) = self.address_operand(a);
                let account = self.low.account(address, a).clone();
                // Which code is there decides the bytes copied: pin it; they are constants.
                self.low.b.guard(GuardKind::Code, account.code_hash);
                let (dest, offset, len) = (self.pin_usize(dest)?, self.pin_usize(offset)?, self.pin_usize(len)?);
                let code = match account.code {
                    Some(code) => code,
                    None => {
                        let bytes = self.low.code_of(address);
                        if bytes.starts_with(&[0xef, 0x01, 0x00]) {
                            self.stop(NoApReason::Authorization, "EXTCODECOPY of an EIP-7702 delegation");
                            return None;
                        }
                        self.low.b.bytes(bytes)
                    }
                };
                let frame = self.frames.last_mut().expect("inside a frame");
                frame.memory.write(&self.low.b, dest, code, offset, len);
            }
            _ => {
                // An opcode the tracer does not model must be one revm halts on (undefined,
                // or not active under this spec): the halt is the path, nothing to model.
                // `step_end` checks that revm did halt; if it ran it, there is no program.
                self.expect_halt =
                    Some((NoApReason::Unmodelled, format!("opcode {opcode:#04x} ran but is not modelled")));
            }
        }
        Some(())
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

    /// CALL, CALLCODE, DELEGATECALL, STATICCALL: pin what decides the call's cost and
    /// target, and leave the rest for the `call` hook.
    fn call_instruction(&mut self, opcode: u8) -> Option<()> {
        let gas = self.pop()?;
        let target = self.pop()?;
        let value = if matches!(opcode, op::CALL | op::CALLCODE) { Some(self.pop()?) } else { None };
        let [args_offset, args_len, ret_offset, ret_len] = self.pop_n::<4>()?;
        // Gas forwarded is min(requested, 63/64 of what is left): pinning the request fixes
        // it (usually it is GAS's constant and nothing is emitted).
        self.low.b.guard(GuardKind::Gas, gas);
        let (args_offset, args_len) = (self.pin_usize(args_offset)?, self.pin_usize(args_len)?);
        let (ret_offset, ret_len) = (self.pin_usize(ret_offset)?, self.pin_usize(ret_len)?);
        let calldata = self.read_memory(args_offset, args_len);
        self.frame().memory.touch(ret_offset, ret_len);
        let (target, target_v) = self.address_operand(target);
        let value_v = match value {
            Some(v) => {
                // A value transfer costs extra gas: pin whether there is one.
                let zero = self.low.b.compute(Op::IsZero, &[v]);
                self.low.b.guard(GuardKind::Gas, zero);
                v
            }
            None if opcode == op::DELEGATECALL => self.frame().value_v,
            None => self.low.b.word(U256::ZERO),
        };
        let scheme = match opcode {
            op::CALL => CallScheme::Call,
            op::CALLCODE => CallScheme::CallCode,
            op::DELEGATECALL => CallScheme::DelegateCall,
            _ => CallScheme::StaticCall,
        };
        // Warm/cold access of the target: aliasing pinned by the world.
        let account = self.low.account(target, target_v).clone();
        let spurious_dragon = self.low.cfg.spec.is_enabled_in(revm::primitives::hardfork::SpecId::SPURIOUS_DRAGON);
        if opcode == op::CALL && (!spurious_dragon || self.low.b.traced_word(value_v) != U256::ZERO) {
            // A CALL pays for a new account when its target is empty and it transfers value
            // (EIP-161); before Spurious Dragon, when the target does not exist, whatever the
            // value (revm's `new_account_cost`). Pin that predicate here, where the cost
            // arises: if the charge makes the frame fail, the world is rolled back and no
            // later pin would cover the target.
            if spurious_dragon {
                let used = self.low.b.compute(Op::Or, &[account.balance, account.nonce]);
                let no_funds = self.low.b.compute(Op::IsZero, &[used]);
                let empty_code = self.low.b.word(KECCAK_EMPTY.into());
                let no_code = self.low.b.compute(Op::Eq, &[account.code_hash, empty_code]);
                let empty = self.low.b.compute(Op::And, &[no_funds, no_code]);
                self.low.b.guard(GuardKind::Gas, empty);
            } else {
                let exists = self.low.load(Op::Exists, &[target_v]);
                self.low.b.guard(GuardKind::Gas, exists);
            }
        }
        self.pending_call =
            Some(PendingCall { scheme, target, target_v, value_v, calldata, ret: (ret_offset, ret_len) });
        Some(())
    }

    /// A precompile call on `input` with `gas_limit`: its output, as a value.
    ///
    /// The status (success, revert, halt) decides the caller's path and the gas used its
    /// remaining gas: both are pinned in one guard. The output's length decides the return
    /// data's layout: pinned too. The output bytes are data.
    fn precompile(&mut self, address: Address, input: Value, gas_limit: u64) -> Option<Value> {
        let imm = Imm::Precompile(address, gas_limit, self.low.cfg.spec);
        let packed = self.low.b.compute_imm(Op::PCall, &[input], imm);
        let Some(Val::Bytes(traced)) = self.low.b.traced(packed) else {
            self.stop(NoApReason::Unmodelled, format!("precompile {address} did not run"));
            return None;
        };
        let len = traced.len();
        let head = self.low.b.compute_imm(Op::Slice, &[packed], Imm::Slice(0, 9));
        let head = self.low.b.compute(Op::ToWord, &[head]);
        self.low.b.guard(GuardKind::Gas, head);
        let n = self.low.b.compute(Op::Len, &[packed]);
        self.low.b.guard(GuardKind::Memory, n);
        Some(self.low.b.compute_imm(Op::Slice, &[packed], Imm::Slice(9, len as u32 - 9)))
    }

    /// The `create` hook, in revm's order: depth and balance checks, nonce bump, address,
    /// collision check, checkpoint, value transfer, then the init code runs.
    fn begin_create(&mut self, depth: usize, inputs: &CreateInputs) -> Option<()> {
        let (creator, creator_v, value_v, initcode, salt) = match self.pending_create.take() {
            None if self.frames.is_empty() => {
                (inputs.caller(), self.top.caller_v, self.top.value_v, self.top.calldata, None)
            }
            None => {
                self.stop(NoApReason::Unmodelled, "a creation without a CREATE instruction");
                return None;
            }
            Some(p) => {
                let parent = self.frames.last().expect("a pending creation has a parent");
                (parent.address, parent.address_v, p.value_v, p.initcode, p.salt)
            }
        };
        if self.low.b.traced(initcode) != Some(&Val::Bytes(inputs.init_code().clone())) {
            self.stop(NoApReason::Unmodelled, "init code differs from revm's");
            return None;
        }
        // Which init code runs decides everything that follows (and CREATE2's address):
        // pin it by its hash. The bytes are then constants.
        let code_hash = self.low.b.compute(Op::Keccak, &[initcode]);
        self.low.b.guard(GuardKind::Code, code_hash);
        let code = inputs.init_code().clone();
        let empty = self.low.b.bytes(Bytes::new());
        let mut frame = Frame {
            stack: Vec::new(),
            memory: Memory::default(),
            address: Address::ZERO,
            address_v: empty,
            caller_v: creator_v,
            value_v,
            calldata: empty,
            code,
            return_data: empty,
            output: None,
            ret: (0, 0),
            create: Some(CreateFrame::Failed),
        };
        let account = self.low.account(creator, creator_v).clone();
        // Depth is a constant of the path; funds are pinned here. Either failure happens
        // before the nonce bump.
        let short = self.low.b.compute(Op::Lt, &[account.balance, value_v]);
        self.low.b.guard(GuardKind::Path, short);
        if depth > revm::primitives::CALL_STACK_LIMIT as usize || self.low.b.traced_word(short) == U256::from(1) {
            self.frames.push(frame);
            return Some(());
        }
        // A creator whose nonce is at its maximum fails (pinned, as it decides the path).
        let max = self.low.b.word(U256::from(u64::MAX));
        let at_max = self.low.b.compute(Op::Eq, &[account.nonce, max]);
        self.low.b.guard(GuardKind::Path, at_max);
        let old_nonce = self.low.b.traced_word(account.nonce).to::<u64>();
        let one = self.low.b.word(U256::from(1));
        let bumped = self.low.b.compute(Op::Add, &[account.nonce, one]);
        self.low.account(creator, creator_v).nonce = bumped;
        let address = inputs.created_address(old_nonce);
        let address_v = match salt {
            None => {
                // CREATE: the address follows from the creator's nonce; pinning the nonce
                // makes it a constant.
                self.low.b.guard(GuardKind::Alias, account.nonce);
                self.low.b.word(crate::record::world::word(address))
            }
            Some(salt) => {
                // CREATE2: keccak256(0xff ++ creator ++ salt ++ keccak256(init code)).
                let b = &mut self.low.b;
                let prefix = b.bytes(Bytes::from_static(&[0xff]));
                let creator_bytes = b.compute(Op::ToBytes, &[creator_v]);
                let creator_bytes = b.compute_imm(Op::Slice, &[creator_bytes], Imm::Slice(12, 20));
                let salt_bytes = b.compute(Op::ToBytes, &[salt]);
                let hash_bytes = b.compute(Op::ToBytes, &[code_hash]);
                let preimage = b.compute(Op::Concat, &[prefix, creator_bytes, salt_bytes, hash_bytes]);
                let hash = b.compute(Op::Keccak, &[preimage]);
                let mask = b.word(address_mask());
                b.compute(Op::And, &[hash, mask])
            }
        };
        if self.low.b.traced_word(address_v) != crate::record::world::word(address) {
            self.stop(NoApReason::Unmodelled, "created address differs from revm's");
            return None;
        }
        // Collision: an account with code or a nonce cannot be created over (pinned).
        let target = self.low.account(address, address_v).clone();
        self.low.b.guard(GuardKind::Code, target.code_hash);
        let fresh = self.low.b.compute(Op::IsZero, &[target.nonce]);
        self.low.b.guard(GuardKind::Path, fresh);
        if self.low.b.traced_word(fresh) == U256::ZERO
            || self.low.b.traced_word(target.code_hash) != U256::from_be_bytes(KECCAK_EMPTY.0)
        {
            self.frames.push(frame);
            return Some(());
        }
        self.snapshots.push(self.low.world.clone());
        let nonce = if self.low.cfg.spec.is_enabled_in(revm::primitives::hardfork::SpecId::SPURIOUS_DRAGON) {
            one
        } else {
            target.nonce
        };
        let created = self.low.account(address, address_v);
        created.created = true;
        created.storage.clear();
        created.nonce = nonce;
        self.transfer((creator, creator_v), (address, address_v), value_v);
        frame.address = address;
        frame.address_v = address_v;
        frame.create = Some(CreateFrame::Running(address, address_v));
        self.frames.push(frame);
        Some(())
    }

    /// The `create_end` hook: deposit the code, or roll the creation back.
    fn end_create(&mut self, outcome: &CreateOutcome) -> Option<()> {
        let Some(frame) = self.frames.pop() else {
            self.stop(NoApReason::Unmodelled, "create_end without a frame");
            return None;
        };
        let result = outcome.result.result;
        let empty = self.low.b.bytes(Bytes::new());
        // What the init code returned, when it ran: revm reports it as the output of a
        // creation that then failed its code deposit.
        let mut returned_bytes = None;
        let (return_data, pushed, created) = match frame.create {
            Some(CreateFrame::Running(address, address_v)) => {
                let snapshot = self.snapshots.pop()?;
                let returned = frame.output.unwrap_or(empty);
                returned_bytes = Some(returned);
                if !result.is_revert() && frame.output.is_some() {
                    // The deployed code decides the deposit (size limit, 0xEF prefix, gas)
                    // and every later call into it: pin it by its hash.
                    let hash = self.low.b.compute(Op::Keccak, &[returned]);
                    self.low.b.guard(GuardKind::Code, hash);
                }
                if result.is_ok() {
                    // The returned bytes are pinned by hash above, so what revm deposits
                    // (them, or nothing under Frontier's rule for a deposit it cannot pay
                    // for) is a constant of the path.
                    let code = outcome.result.output.clone();
                    let hash = self.low.b.word(revm::primitives::keccak256(&code).into());
                    let code_v = self.low.b.bytes(code);
                    let account = self.low.account(address, address_v);
                    account.code_hash = hash;
                    account.code = Some(code_v);
                    (empty, address_v, Some((address_v, code_v)))
                } else {
                    self.low.world = snapshot;
                    let data = if result.is_revert() { returned } else { empty };
                    let zero = self.low.b.word(U256::ZERO);
                    (data, zero, None)
                }
            }
            _ => {
                let zero = self.low.b.word(U256::ZERO);
                (empty, zero, None)
            }
        };
        // revm's view of the frame's output: the deployed code, or the revert data.
        let shown = match created {
            Some((_, code)) => code,
            None => return_data,
        };
        let revm_output = Some(Val::Bytes(outcome.result.output.clone()));
        let deposit_failed = !result.is_ok() && !result.is_revert();
        let matches = self.low.b.traced(shown).cloned() == revm_output
            || (deposit_failed && returned_bytes.and_then(|r| self.low.b.traced(r).cloned()) == revm_output);
        if !matches {
            let ours = match self.low.b.traced(shown) {
                Some(Val::Bytes(b)) => b.len(),
                _ => usize::MAX,
            };
            let why = format!(
                "creation output differs from revm's ({:?}, {} bytes vs revm's {})",
                result,
                ours,
                outcome.result.output.len()
            );
            self.stop(NoApReason::Unmodelled, why);
            return None;
        }
        match self.frames.last_mut() {
            None => {
                self.top_output = Some(shown);
                self.top_created = created.map(|(address, _)| address);
            }
            Some(parent) => {
                parent.return_data = return_data;
                parent.stack.push(pushed);
            }
        }
        Some(())
    }

    /// SELFDESTRUCT, as revm's journal does it: the balance moves to the target (unless it
    /// is the contract itself), and the account is destroyed before Cancun, or from Cancun
    /// only when it was created in this transaction (EIP-6780); destroying into itself burns
    /// the balance.
    fn selfdestruct(&mut self) -> Option<()> {
        use revm::primitives::hardfork::SpecId;
        let [target] = self.pop_n::<1>()?;
        let (target, target_v) = self.address_operand(target);
        let (address, address_v) = (self.frame().address, self.frame().address_v);
        let contract = self.low.account(address, address_v).clone();
        // Warm/cold access to the target: pinned by the world's aliasing guards.
        let beneficiary = self.low.account(target, target_v).clone();
        // Gas: a new-account charge applies when the target is empty (before EIP-161: does
        // not exist) and the contract has a balance. Pin all three facts.
        let exists = self.low.load(Op::Exists, &[beneficiary.addr]);
        self.low.b.guard(GuardKind::Gas, exists);
        let used = self.low.b.compute(Op::Or, &[beneficiary.balance, beneficiary.nonce]);
        let no_funds = self.low.b.compute(Op::IsZero, &[used]);
        let empty_code = self.low.b.word(KECCAK_EMPTY.into());
        let no_code = self.low.b.compute(Op::Eq, &[beneficiary.code_hash, empty_code]);
        let empty = self.low.b.compute(Op::And, &[no_funds, no_code]);
        self.low.b.guard(GuardKind::Gas, empty);
        let broke = self.low.b.compute(Op::IsZero, &[contract.balance]);
        self.low.b.guard(GuardKind::Gas, broke);
        if address != target {
            let credited = self.low.add_no_overflow(beneficiary.balance, contract.balance);
            self.low.account(target, target_v).balance = credited;
        }
        let destroy = contract.created || !self.low.cfg.spec.is_enabled_in(SpecId::CANCUN);
        if destroy || address != target {
            let zero = self.low.b.word(U256::ZERO);
            self.low.account(address, address_v).balance = zero;
        }
        let empty_output = self.low.b.bytes(Bytes::new());
        self.frame().output = Some(empty_output);
        Some(())
    }

    /// Moves `value` from `from` to `to` as revm's transfer does, pinning sufficiency.
    fn transfer(&mut self, from: (Address, Value), to: (Address, Value), value: Value) {
        if self.low.b.as_const(value) == Some(U256::ZERO) {
            return;
        }
        let balance = self.low.account(from.0, from.1).balance;
        // Whether the sender can pay decides whether the call runs at all.
        let short = self.low.b.compute(Op::Lt, &[balance, value]);
        self.low.b.guard(GuardKind::Path, short);
        if self.low.b.traced_word(short) == U256::from(1) || from.0 == to.0 {
            return;
        }
        let debited = self.low.b.compute(Op::Sub, &[balance, value]);
        self.low.account(from.0, from.1).balance = debited;
        let before = self.low.account(to.0, to.1).balance;
        let credited = self.low.add_no_overflow(before, value);
        self.low.account(to.0, to.1).balance = credited;
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
        if let Some(info) = revm::bytecode::opcode::OpCode::new(opcode).map(|o| o.info()) {
            let (depth, inputs) = (self.frame().stack.len(), info.inputs() as usize);
            if depth < inputs || depth - inputs + info.outputs() as usize > revm::interpreter::STACK_LIMIT {
                self.expect_halt = Some((NoApReason::Unmodelled, "stack underflow or overflow revm ran".into()));
                return;
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
        if own_code.len() == 23 && own_code.starts_with(&[0xef, 0x01, 0x00]) {
            let delegate = Address::from_slice(&own_code[3..]);
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
