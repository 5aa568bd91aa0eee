//! Message calls: the CALL family's operands and costs, precompiles (run through revm's own
//! implementation), and value transfers.

use super::*;

impl<D: DatabaseRef> Tracer<'_, D> {
    /// CALL, CALLCODE, DELEGATECALL, STATICCALL: pin what decides the call's cost and
    /// target, and leave the rest for the `call` hook.
    pub(super) fn call_instruction(&mut self, opcode: u8) -> Option<()> {
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
                let empty = self.low.is_empty(&account);
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
    pub(super) fn precompile(&mut self, address: Address, input: Value, gas_limit: u64) -> Option<Value> {
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

    /// Moves `value` from `from` to `to` as revm's transfer does, pinning sufficiency.
    pub(super) fn transfer(&mut self, from: (Address, Value), to: (Address, Value), value: Value) {
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
