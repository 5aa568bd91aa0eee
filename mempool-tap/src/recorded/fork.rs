//! Fork names, the mainnet schedule, and the blob-fee parameters each fork uses.

use revm::{
    context_interface::block::BlobExcessGasAndPrice,
    primitives::{
        eip4844::{BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE},
        hardfork::SpecId,
    },
};

/// Maps a fork name, as recorded in an index (`"GRAY_GLACIER"`) or a fixture (`"Prague"`), to
/// the revm spec whose execution rules it uses.
///
/// revm 43 dropped the difficulty-bomb-only forks; their rules equal the fork before them,
/// so they map there (DAO_FORK → HOMESTEAD, MUIR_GLACIER → ISTANBUL, ARROW and GRAY_GLACIER →
/// LONDON). Returns `None` for a name prescient does not know.
pub fn parse_fork(name: &str) -> Option<SpecId> {
    let normalized = name.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    let spec = match normalized.as_str() {
        "FRONTIER" => SpecId::FRONTIER,
        "HOMESTEAD" | "DAO_FORK" | "DAO" => SpecId::HOMESTEAD,
        "TANGERINE" | "TANGERINE_WHISTLE" | "EIP150" => SpecId::TANGERINE,
        "SPURIOUS_DRAGON" | "EIP158" => SpecId::SPURIOUS_DRAGON,
        "BYZANTIUM" => SpecId::BYZANTIUM,
        // Constantinople alone (with EIP-1283) never ran on mainnet and revm 43 dropped it.
        "PETERSBURG" | "CONSTANTINOPLEFIX" | "CONSTANTINOPLE_FIX" => SpecId::PETERSBURG,
        "ISTANBUL" | "MUIR_GLACIER" => SpecId::ISTANBUL,
        "BERLIN" => SpecId::BERLIN,
        "LONDON" | "ARROW_GLACIER" | "GRAY_GLACIER" => SpecId::LONDON,
        "MERGE" | "PARIS" => SpecId::MERGE,
        "SHANGHAI" => SpecId::SHANGHAI,
        "CANCUN" => SpecId::CANCUN,
        "PRAGUE" => SpecId::PRAGUE,
        // The blob-parameter-only forks run Osaka's rules (their blob fee is the chain's).
        "OSAKA" | "BPO1" | "BPO2" => SpecId::OSAKA,
        _ => return None,
    };
    Some(spec)
}

/// Mainnet activation timestamps of the timestamp-scheduled forks.
const SHANGHAI_TIME: u64 = 1_681_338_455;
const CANCUN_TIME: u64 = 1_710_338_135;
const PRAGUE_TIME: u64 = 1_746_612_311;
const OSAKA_TIME: u64 = 1_764_798_551;
/// EIP-7892 blob-parameter-only forks on mainnet.
const BPO1_TIME: u64 = 1_765_290_071;
const BPO2_TIME: u64 = 1_767_747_671;
/// EIP-7892 update fractions of BPO1 and BPO2.
const BPO1_UPDATE_FRACTION: u64 = 8_346_193;
const BPO2_UPDATE_FRACTION: u64 = 11_684_671;

/// The spec mainnet runs at block `number` with `timestamp`.
pub fn mainnet_spec(number: u64, timestamp: u64) -> SpecId {
    // Timestamp-scheduled forks first, newest first.
    for (time, spec) in [
        (OSAKA_TIME, SpecId::OSAKA),
        (PRAGUE_TIME, SpecId::PRAGUE),
        (CANCUN_TIME, SpecId::CANCUN),
        (SHANGHAI_TIME, SpecId::SHANGHAI),
    ] {
        if timestamp >= time {
            return spec;
        }
    }
    for (block, spec) in [
        (15_537_394, SpecId::MERGE),
        (12_965_000, SpecId::LONDON),
        (12_244_000, SpecId::BERLIN),
        (9_069_000, SpecId::ISTANBUL),
        (7_280_000, SpecId::PETERSBURG),
        (4_370_000, SpecId::BYZANTIUM),
        (2_675_000, SpecId::SPURIOUS_DRAGON),
        (2_463_000, SpecId::TANGERINE),
        (1_150_000, SpecId::HOMESTEAD),
    ] {
        if number >= block {
            return spec;
        }
    }
    SpecId::FRONTIER
}

/// The blob base fee of a block on mainnet, from its excess blob gas, spec and timestamp.
///
/// `None` before Cancun (no blobs). After Osaka the update fraction follows the EIP-7892
/// schedule (BPO1, BPO2), which revm's `new_with_spec` does not know about.
pub fn mainnet_blob_fee(spec: SpecId, timestamp: u64, excess_blob_gas: u64) -> Option<BlobExcessGasAndPrice> {
    if !spec.is_enabled_in(SpecId::CANCUN) {
        return None;
    }
    let fraction = if timestamp >= BPO2_TIME {
        BPO2_UPDATE_FRACTION
    } else if timestamp >= BPO1_TIME {
        BPO1_UPDATE_FRACTION
    } else if spec.is_enabled_in(SpecId::PRAGUE) {
        BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE
    } else {
        BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN
    };
    Some(BlobExcessGasAndPrice::new(excess_blob_gas, fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_names() {
        let cases = [
            ("FRONTIER", Some(SpecId::FRONTIER)),
            ("DAO_FORK", Some(SpecId::HOMESTEAD)),
            ("MUIR_GLACIER", Some(SpecId::ISTANBUL)),
            ("ARROW_GLACIER", Some(SpecId::LONDON)),
            ("GRAY_GLACIER", Some(SpecId::LONDON)),
            ("Prague", Some(SpecId::PRAGUE)),
            ("osaka", Some(SpecId::OSAKA)),
            ("AMSTERDAM_PLUS", None),
            ("", None),
        ];
        for (name, expected) in cases {
            assert_eq!(parse_fork(name), expected, "{name}");
        }
    }

    #[test]
    fn schedule_boundaries() {
        let cases = [
            (1_149_999, 0, SpecId::FRONTIER),
            (1_150_000, 0, SpecId::HOMESTEAD),
            (4_370_000, 0, SpecId::BYZANTIUM),
            (15_537_393, 0, SpecId::LONDON),
            (15_537_394, 0, SpecId::MERGE),
            (17_034_870, SHANGHAI_TIME, SpecId::SHANGHAI),
            (22_546_209, 1_748_011_091, SpecId::PRAGUE),
            (25_323_281, 1_781_531_063, SpecId::OSAKA),
        ];
        for (number, ts, expected) in cases {
            assert_eq!(mainnet_spec(number, ts), expected, "block {number}");
        }
    }

    #[test]
    fn blob_fee_follows_bpo_schedule() {
        assert!(mainnet_blob_fee(SpecId::SHANGHAI, SHANGHAI_TIME, 0).is_none());
        let excess = 100_000_000;
        let prague = mainnet_blob_fee(SpecId::OSAKA, OSAKA_TIME, excess).expect("post-Cancun");
        let bpo2 = mainnet_blob_fee(SpecId::OSAKA, BPO2_TIME, excess).expect("post-Cancun");
        // A larger update fraction lowers the price for the same excess.
        assert!(bpo2.blob_gasprice < prague.blob_gasprice);
    }
}
