//! Opcodes, applied symbolically before revm runs them, by family as revm's instruction
//! table groups them: arithmetic and bitwise, environment and block information, memory and
//! storage, control flow, stack, logs. Calls, creations and SELFDESTRUCT hand over to their
//! own modules.

use super::*;

impl<D: DatabaseRef> Tracer<'_, D> {
    pub(super) fn binary(&mut self, ir: Op) -> Option<()> {
        let [a, b] = self.pop_n::<2>()?;
        let v = self.low.b.compute(ir, &[a, b]);
        self.push(v);
        Some(())
    }

    /// Applies one opcode symbolically, before revm runs it.
    pub(super) fn apply(&mut self, opcode: u8, pc: usize) -> Option<()> {
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
                self.low.world.logs.push(crate::record::world::SymLog { address, data, topics });
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
            op::SELFDESTRUCT => self.self_destruct()?,
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
                        // Any code that opens like a designator (revm's magic and version).
                        let magic = revm::bytecode::eip7702::EIP7702_MAGIC_BYTES;
                        if bytes.starts_with(magic)
                            && bytes.get(magic.len()) == Some(&revm::bytecode::eip7702::EIP7702_VERSION)
                        {
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
}
