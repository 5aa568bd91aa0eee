//! The text format of programs: `print` and `parse`, with `parse(print(p)) == p`.
//!
//! ```text
//! ; comment
//! env CANCUN chain 1
//! status {"Success":"Stop"}
//! gas 21000 refund 0
//! v0 = const 0x1000000000000000000000000000000000000001
//! v1 = load.balance v0
//! v2 = slice v1, 0, 32
//!     guard envelope v5, 0x0
//!     store.account v0, v1, v2, v3 created
//! ```
//!
//! Instruction `N` defines `vN`; instructions without a result are indented and still take
//! an index, so a `vN =` line must carry the index of its position.

use std::{fmt::Write, str::FromStr};

use revm::primitives::{Address, Bytes, U256, hardfork::SpecId};

use crate::{
    ops::{GuardKind, Op, Ty},
    outcome::TxStatus,
    program::{AccountFlags, Imm, Inst, Program, ProgramEnv, Value},
};

/// Prints a program in the text format.
pub fn print(p: &Program) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "env {} chain {}", p.env.spec, p.env.chain_id);
    if let Some(status) = &p.status {
        let json = serde_json::to_string(status).unwrap_or_else(|_| "null".into());
        let _ = writeln!(out, "status {json}");
    }
    let _ = writeln!(out, "gas {} refund {}", p.gas_used, p.gas_refunded);
    for (i, inst) in p.insts.iter().enumerate() {
        let _ = writeln!(out, "{}", print_inst(Value(i as u32), inst));
    }
    out
}

/// Prints one instruction (with its result name, or indented when it has none).
pub fn print_inst(v: Value, inst: &Inst) -> String {
    let mut line = if inst.op.ty() == Ty::None { format!("    {}", inst.op) } else { format!("{v} = {}", inst.op) };
    let mut parts: Vec<String> = Vec::new();
    if let Imm::Guard(kind, _) = &inst.imm {
        line.push(' ');
        line.push_str(kind.name());
    }
    parts.extend(inst.args.iter().map(Value::to_string));
    match &inst.imm {
        Imm::None | Imm::Flags(_) => {}
        Imm::Word(w) | Imm::Guard(_, w) => parts.push(format!("{w:#x}")),
        Imm::Bytes(b) => parts.push(b.to_string()),
        Imm::Slice(offset, len) => {
            parts.push(offset.to_string());
            parts.push(len.to_string());
        }
        Imm::Precompile(address, gas_limit, spec) => {
            parts.push(address.to_string());
            parts.push(gas_limit.to_string());
            parts.push(spec.to_string());
        }
    }
    if !parts.is_empty() {
        line.push(' ');
        line.push_str(&parts.join(", "));
    }
    if let Imm::Flags(flags) = inst.imm {
        if flags.created {
            line.push_str(" created");
        }
        if flags.selfdestructed {
            line.push_str(" selfdestructed");
        }
    }
    line
}

/// A parse error: the line (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses the text format. Comments (`;` to end of line) and blank lines are ignored.
pub fn parse(text: &str) -> Result<Program, ParseError> {
    let mut p = Program::default();
    for (n, raw) in text.lines().enumerate() {
        let err = |message: String| ParseError { line: n + 1, message };
        let line = raw.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("env") => {
                let tokens: Vec<&str> = words.collect();
                let [spec, "chain", chain] = tokens.as_slice() else {
                    return Err(err("expected `env <SPEC> chain <id>`".into()));
                };
                let spec = parse_spec(spec).ok_or_else(|| err(format!("unknown spec `{spec}`")))?;
                let chain_id = chain.parse().map_err(|e| err(format!("chain id: {e}")))?;
                p.env = ProgramEnv { spec, chain_id };
            }
            Some("status") => {
                let json = line["status".len()..].trim();
                let status: TxStatus = serde_json::from_str(json).map_err(|e| err(format!("status: {e}")))?;
                p.status = Some(status);
            }
            Some("gas") => {
                let tokens: Vec<&str> = words.collect();
                let [gas, "refund", refund] = tokens.as_slice() else {
                    return Err(err("expected `gas <used> refund <refund>`".into()));
                };
                p.gas_used = gas.parse().map_err(|e| err(format!("gas: {e}")))?;
                p.gas_refunded = refund.parse().map_err(|e| err(format!("refund: {e}")))?;
            }
            Some(_) => {
                let index = p.insts.len() as u32;
                let inst = parse_inst(line, index).map_err(err)?;
                p.insts.push(inst);
            }
            None => {}
        }
    }
    Ok(p)
}

/// A spec by revm's display name (`Cancun`) or its identifier (`CANCUN`).
fn parse_spec(name: &str) -> Option<SpecId> {
    SpecId::from_str(name).ok().or_else(|| {
        (0..=u8::MAX)
            .map_while(|n| SpecId::try_from(n).ok())
            .find(|spec| format!("{spec:?}").eq_ignore_ascii_case(name))
    })
}

fn parse_value(token: &str) -> Result<Value, String> {
    token
        .strip_prefix('v')
        .and_then(|n| n.parse().ok())
        .map(Value)
        .ok_or_else(|| format!("expected a value like `v3`, found `{token}`"))
}

fn parse_word(token: &str) -> Result<U256, String> {
    U256::from_str(token).map_err(|e| format!("bad word `{token}`: {e}"))
}

fn parse_inst(line: &str, index: u32) -> Result<Inst, String> {
    let (result, rest) = match line.split_once('=') {
        Some((lhs, rhs)) if lhs.trim().starts_with('v') => (Some(parse_value(lhs.trim())?), rhs.trim()),
        _ => (None, line),
    };
    let (name, operands) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let op = Op::from_name(name).ok_or_else(|| format!("unknown operation `{name}`"))?;
    match (result, op.ty()) {
        (Some(v), Ty::Word | Ty::Bytes) if v.0 == index => {}
        (Some(v), Ty::Word | Ty::Bytes) => {
            return Err(format!("`{v}` defined at position {index}"));
        }
        (None, Ty::None) => {}
        (Some(_), Ty::None) => return Err(format!("`{op}` has no result")),
        (None, _) => return Err(format!("`{op}` needs a result name")),
    }
    let mut tokens: Vec<&str> = operands.split([',', ' ']).filter(|t| !t.is_empty()).collect();
    let mut imm = Imm::None;
    match op {
        Op::Const => imm = Imm::Word(parse_word(tokens.pop().ok_or("missing constant")?)?),
        Op::ConstBytes => {
            let token = tokens.pop().ok_or("missing bytes")?;
            imm = Imm::Bytes(Bytes::from_str(token).map_err(|e| format!("bad bytes `{token}`: {e}"))?);
        }
        Op::Guard => {
            let expected = parse_word(tokens.pop().ok_or("missing expected value")?)?;
            if tokens.is_empty() {
                return Err("missing guard kind".into());
            }
            let kind = tokens.remove(0);
            let kind = GuardKind::from_name(kind).ok_or_else(|| format!("unknown guard kind `{kind}`"))?;
            imm = Imm::Guard(kind, expected);
        }
        Op::Slice => {
            let len = tokens.pop().ok_or("missing length")?.parse().map_err(|e| format!("length: {e}"))?;
            let offset = tokens.pop().ok_or("missing offset")?.parse().map_err(|e| format!("offset: {e}"))?;
            imm = Imm::Slice(offset, len);
        }
        Op::PCall => {
            let spec = tokens.pop().ok_or("missing spec")?;
            let spec = parse_spec(spec).ok_or_else(|| format!("unknown spec `{spec}`"))?;
            let gas = tokens.pop().ok_or("missing gas limit")?.parse().map_err(|e| format!("gas limit: {e}"))?;
            let address = tokens.pop().ok_or("missing address")?;
            let address = Address::from_str(address).map_err(|e| format!("bad address `{address}`: {e}"))?;
            imm = Imm::Precompile(address, gas, spec);
        }
        Op::StoreAccount => {
            let mut flags = AccountFlags::default();
            while let Some(last) = tokens.last() {
                match *last {
                    "created" => flags.created = true,
                    "selfdestructed" => flags.selfdestructed = true,
                    _ => break,
                }
                tokens.pop();
            }
            imm = Imm::Flags(flags);
        }
        _ => {}
    }
    let args = tokens.into_iter().map(parse_value).collect::<Result<_, _>>()?;
    Ok(Inst { op, args, imm })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::GuardKind;
    use revm::context::result::SuccessReason;

    fn sample() -> Program {
        let mut insts = vec![
            Inst { op: Op::Const, args: vec![], imm: Imm::Word(U256::from(0x1234)) },
            Inst { op: Op::Balance, args: vec![Value(0)], imm: Imm::None },
            Inst { op: Op::ConstBytes, args: vec![], imm: Imm::Bytes(Bytes::from_static(&[0xde, 0xad])) },
            Inst { op: Op::Slice, args: vec![Value(2)], imm: Imm::Slice(1, 4) },
            Inst { op: Op::Lt, args: vec![Value(1), Value(0)], imm: Imm::None },
            Inst { op: Op::Guard, args: vec![Value(4)], imm: Imm::Guard(GuardKind::Envelope, U256::ZERO) },
        ];
        insts.push(Inst {
            op: Op::StoreAccount,
            args: vec![Value(0), Value(1), Value(0), Value(0)],
            imm: Imm::Flags(AccountFlags { created: true, selfdestructed: false }),
        });
        insts.push(Inst { op: Op::Output, args: vec![Value(3)], imm: Imm::None });
        insts.push(Inst {
            op: Op::PCall,
            args: vec![Value(2)],
            imm: Imm::Precompile(Address::with_last_byte(2), 5_000, SpecId::CANCUN),
        });
        Program {
            insts,
            status: Some(TxStatus::Success(SuccessReason::Return)),
            gas_used: 21_000,
            gas_refunded: 0,
            env: ProgramEnv { spec: SpecId::CANCUN, chain_id: 1 },
        }
    }

    #[test]
    fn print_then_parse_is_identity() {
        let p = sample();
        let text = print(&p);
        assert_eq!(parse(&text), Ok(p), "{text}");
        assert!(text.contains("    guard envelope v4, 0x0"), "{text}");
        assert!(text.contains("    store.account v0, v1, v0, v0 created"), "{text}");
    }

    #[test]
    fn parse_errors_name_the_line() {
        let cases = [
            ("v0 = frobnicate v1", "unknown operation"),
            ("v1 = const 0x1", "defined at position 0"),
            ("    guard v0, 0x1", "unknown guard kind"),
            ("v0 = load.balance x7", "expected a value"),
            ("env LONDON chain x", "chain id"),
            ("v0 = guard path v0, 0x0", "has no result"),
        ];
        for (text, needle) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, 1);
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }
}
