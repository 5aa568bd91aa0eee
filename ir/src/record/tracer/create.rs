//! CREATE and CREATE2, in revm's order: depth and balance checks, nonce bump, address,
//! collision check, checkpoint, value transfer, init code, deposit.

use super::*;

impl<D: DatabaseRef> Tracer<'_, D> {
    /// The `create` hook, in revm's order: depth and balance checks, nonce bump, address,
    /// collision check, checkpoint, value transfer, then the init code runs.
    pub(super) fn begin_create(&mut self, depth: usize, inputs: &CreateInputs) -> Option<()> {
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
                // CREATE: keccak256(rlp([creator, nonce])), computed from the nonce. A
                // factory's creations are then data, whatever else it created first; only
                // the nonce's encoded length is pinned.
                let b = &mut self.low.b;
                let creator_bytes = b.compute(Op::ToBytes, &[creator_v]);
                let creator_bytes = b.compute_imm(Op::Slice, &[creator_bytes], Imm::Slice(12, 20));
                // The nonce's RLP: 0x80 for zero, the byte itself below 0x80, else 0x80 + n
                // and its n big-endian bytes; its class is a range of values, pinned.
                let n = (64 - old_nonce.leading_zeros()).div_ceil(8) as usize;
                let (lo, hi, head, tail) = match old_nonce {
                    0 => (0, U256::from(1), vec![0x80], None),
                    1..0x80 => (1, U256::from(0x80), Vec::new(), Some(1)),
                    _ => ((1u64 << (8 * (n - 1))).max(0x80), U256::from(1) << (8 * n), vec![0x80 + n as u8], Some(n)),
                };
                if lo > 0 {
                    let lo = b.word(U256::from(lo));
                    let below = b.compute(Op::Lt, &[account.nonce, lo]);
                    b.guard(GuardKind::Alias, below);
                }
                let hi = b.word(hi);
                let below = b.compute(Op::Lt, &[account.nonce, hi]);
                b.guard(GuardKind::Alias, below);
                let payload = 21 + head.len() + tail.unwrap_or(0);
                let mut parts = vec![b.bytes(Bytes::from(vec![0xc0 + payload as u8, 0x94])), creator_bytes];
                if !head.is_empty() {
                    parts.push(b.bytes(Bytes::from(head)));
                }
                if let Some(len) = tail {
                    let word = b.compute(Op::ToBytes, &[account.nonce]);
                    parts.push(b.compute_imm(Op::Slice, &[word], Imm::Slice(32 - len as u32, len as u32)));
                }
                let preimage = b.compute(Op::Concat, &parts);
                let hash = b.compute(Op::Keccak, &[preimage]);
                let mask = b.word(address_mask());
                b.compute(Op::And, &[hash, mask])
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
    pub(super) fn end_create(&mut self, outcome: &CreateOutcome) -> Option<()> {
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
}
