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
        interp::{Evaluation, evaluate},
        record::{RecordConfig, record},
    },
    support::{SENDER, synthetic_call, synthetic_env},
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
    let mut checked = 0;
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
            checked += 1;
            let program = match rec.program {
                Ok(p) => p,
                Err(reason) => {
                    failures.push(format!("{spec:?} {op}: {} ({:?})", reason.name(), rec.trace.abort));
                    continue;
                }
            };
            match evaluate(&program, &db, &cfg, &block, 1 << 20) {
                Evaluation::Hit(got) => {
                    if let Some(d) = got.first_difference(&rec.outcome) {
                        failures.push(format!("{spec:?} {op}: WRONG HIT: {d}"));
                    }
                }
                Evaluation::Miss(m) => failures.push(format!("{spec:?} {op}: misses its own state: {m:?}")),
            }
        }
    }
    assert!(checked > 1000, "only {checked} opcode runs");
    assert!(failures.is_empty(), "{} of {checked} opcode runs failed:\n{}", failures.len(), failures.join("\n"));
}
