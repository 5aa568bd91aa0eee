//! Every opcode revm knows, against the tracer: run alone (its operands zeros) under each
//! fork, it must get a program that hits its own state and equals revm. An opcode the
//! tracer does not model gets no program, so a new opcode in revm's table fails this test
//! until it is modelled (CLZ, EIP-7939, was the first such gap). Opcodes not active under a
//! fork halt there, and that halt is a path like any other.

use revm::{
    bytecode::opcode::{self, OpCode},
    database::InMemoryDB,
    primitives::{Address, Bytes, U256, address, hardfork::SpecId},
    state::{AccountInfo, Bytecode},
};

use crate::{
    ir::{
        record::{RecordConfig, record},
        synthetic::{SENDER, synthetic_call, synthetic_env},
    },
    oracle::{check, prepare},
};

const CONTRACT: Address = address!("0x4000000000000000000000000000000000000004");

/// `PUSH1 0` for each input, the opcode with zero immediates, then `STOP`.
fn alone(op: OpCode) -> Vec<u8> {
    let mut code = Vec::new();
    for _ in 0..op.inputs() {
        code.extend_from_slice(&[opcode::PUSH1, 0]);
    }
    code.push(op.get());
    code.extend(std::iter::repeat_n(0u8, op.info().immediate_size() as usize));
    code.push(opcode::STOP);
    code
}

#[test]
fn every_opcode_revm_knows_is_modelled() {
    let specs = [
        SpecId::FRONTIER,
        SpecId::HOMESTEAD,
        SpecId::BYZANTIUM,
        SpecId::ISTANBUL,
        SpecId::LONDON,
        SpecId::SHANGHAI,
        SpecId::CANCUN,
        SpecId::PRAGUE,
        SpecId::OSAKA,
    ];
    let mut failures = Vec::new();
    let mut runs = 0;
    for spec in specs {
        let (cfg, mut block) = synthetic_env(spec);
        if !spec.is_enabled_in(SpecId::LONDON) {
            block.basefee = 0;
        }
        for byte in 0..=u8::MAX {
            let Some(op) = OpCode::new(byte) else { continue };
            let mut db = InMemoryDB::default();
            db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
            let code = Bytecode::new_raw(Bytes::from(alone(op)));
            db.insert_account_info(CONTRACT, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
            let mut tx = synthetic_call(CONTRACT, Bytes::new());
            if !spec.is_enabled_in(SpecId::LONDON) {
                tx.tx_type = 0;
                tx.gas_priority_fee = None;
            }
            let rec = record(&db, &cfg, &block, &tx, RecordConfig::default()).expect("valid");
            runs += 1;
            let program = match rec.program {
                Ok(p) => p,
                Err(reason) => {
                    failures.push(format!("{spec:?} {op}: {} ({:?})", reason.name(), rec.trace.abort));
                    continue;
                }
            };
            let what = format!("{spec:?} {op}");
            let outcome = rec.outcome.clone();
            let checked = check(&prepare(&program), &db, &cfg, &block, || Ok(outcome), &what);
            failures.extend(checked.problems);
            if checked.hit.is_none() {
                failures.push(format!("{what}: misses its own state: {:?}", checked.miss));
            }
        }
    }
    assert!(runs > 1000, "only {runs} opcode runs");
    assert!(failures.is_empty(), "{} of {runs} opcode runs failed:\n{}", failures.len(), failures.join("\n"));
}
