//! SELFDESTRUCT, as revm's journal does it (EIP-6780 from Cancun).

use super::*;

impl<D: DatabaseRef> Tracer<'_, D> {
    /// SELFDESTRUCT, as revm's journal does it: the balance moves to the target (unless it
    /// is the contract itself), and the account is destroyed before Cancun, or from Cancun
    /// only when it was created in this transaction (EIP-6780); destroying into itself burns
    /// the balance.
    pub(super) fn self_destruct(&mut self) -> Option<()> {
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
        let empty = self.low.is_empty(&beneficiary);
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
}
