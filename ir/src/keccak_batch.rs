//! Keccak-256 of several independent inputs at once.
//!
//! A block's receipts root hashes one trie leaf per transaction (the encoded receipt with its
//! 256-byte bloom: two or three permutations each), and on blocks of a thousand cheap
//! transactions that hashing took longer than importing them: the import waited for its
//! receipts thread for a third of its time (perf, blocks 13,330,992 and 13,287,210). The
//! leaves are independent messages, so eight of them go through one permutation of eight
//! states held lane by lane in AVX-512 registers (`vpternlogq` does θ's three-way xor and
//! χ in one instruction each, `vprolvq` the rotations), on CPUs that have it; elsewhere each
//! input is hashed alone. `cargo bench -p prescient-tools --bench receipts`: eight leaves of
//! 300 bytes in 1.54 µs against 6.49 µs one at a time (`keccak-asm`). A four-lane AVX2
//! version (rotations as two shifts, χ as and-not and xor, the state spilled from sixteen
//! registers) took 6.98 µs, slower than the scalar assembly, and was dropped.
//!
//! Written here because no crate does this on stable Rust: the `keccak` crate's parallel
//! backends need `core::simd` (nightly) and a build-time configuration flag, and
//! `keccak-asm` (what `alloy` uses) hashes one message at a time. The permutation is
//! Keccak-f\[1600\] as FIPS 202 specifies it, with Ethereum's original padding (`0x01`);
//! the tests compare it with [`keccak256`] on every length around the rate's multiples.

use alloy::primitives::{B256, keccak256};

/// Bytes absorbed per permutation (Keccak-256: 1600 − 2·256 bits).
const RATE: usize = 136;
/// Inputs hashed together at most (the AVX-512 path's lanes: eight 64-bit lanes of a
/// 512-bit register).
pub const LANES: usize = 8;

/// Inputs longer than this are hashed alone: a group runs as many permutations as its
/// longest input needs, so one long input (a receipt with ten thousand logs is 1.6 MB) would
/// make the other lanes wait through all of them.
pub const LONG: usize = 16 * RATE;

/// How a batch is hashed: one input at a time, or in groups in vector registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Each input alone ([`keccak256`]).
    Scalar,
    /// Groups of eight in AVX-512 registers.
    Avx512,
}

impl Path {
    /// Whether this CPU can run it.
    pub fn supported(self) -> bool {
        match self {
            Path::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Path::Avx512 => false,
        }
    }

    /// The paths this CPU can run, widest first (`Scalar` always, last).
    pub fn available() -> Vec<Path> {
        [Path::Avx512, Path::Scalar].into_iter().filter(|p| p.supported()).collect()
    }

    /// The widest path this CPU can run.
    pub fn best() -> Path {
        if Path::Avx512.supported() { Path::Avx512 } else { Path::Scalar }
    }
}

/// Writes the Keccak-256 of each of `inputs` into `out` (which must be as long), on the
/// widest path this CPU has.
pub fn keccak256_batch(inputs: &[&[u8]], out: &mut [B256]) {
    keccak256_batch_on(Path::best(), inputs, out);
}

/// [`keccak256_batch`] on `path`. Panics when the CPU cannot run it (see
/// [`Path::available`]).
pub fn keccak256_batch_on(path: Path, inputs: &[&[u8]], out: &mut [B256]) {
    assert_eq!(inputs.len(), out.len(), "one output per input");
    assert!(path.supported(), "this CPU cannot hash on {path:?}");
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (asserted above).
        Path::Avx512 => grouped::<LANES>(inputs, out, |g, o| unsafe { x86::avx512::hash(g, o) }),
        _ => {
            for (input, out) in inputs.iter().zip(out) {
                *out = keccak256(input);
            }
        }
    }
}

/// Hashes `inputs` in groups of up to `N` inputs of at most [`LONG`] bytes, in order, with
/// `hash_group`; longer inputs, and a group of one, alone.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn grouped<const N: usize>(inputs: &[&[u8]], out: &mut [B256], hash_group: impl Fn(&[&[u8]], &mut [B256])) {
    let mut group: [&[u8]; N] = [&[]; N];
    let mut at = [0usize; N];
    let mut n = 0;
    let flush = |group: &[&[u8]], at: &[usize], out: &mut [B256]| {
        if let ([input], [i]) = (group, at) {
            out[*i] = keccak256(input);
            return;
        }
        let mut hashes = [B256::ZERO; N];
        hash_group(group, &mut hashes[..group.len()]);
        for (i, hash) in at.iter().zip(hashes) {
            out[*i] = hash;
        }
    };
    for (i, input) in inputs.iter().enumerate() {
        if input.len() > LONG {
            out[i] = keccak256(input);
            continue;
        }
        (group[n], at[n]) = (input, i);
        n += 1;
        if n == N {
            flush(&group, &at, out);
            n = 0;
        }
    }
    if n > 0 {
        flush(&group[..n], &at[..n], out);
    }
}

/// The `index`-th rate-sized block of `input` with Keccak's padding (`0x01 … 0x80`) applied
/// when it is the last one, as little-endian words. `input` has `input.len() / RATE + 1`
/// blocks: padding adds at least one byte.
fn block_words(input: &[u8], index: usize) -> [u64; RATE / 8] {
    let start = index * RATE;
    let mut bytes = [0u8; RATE];
    let rest = input.get(start..).unwrap_or_default();
    let take = rest.len().min(RATE);
    bytes[..take].copy_from_slice(&rest[..take]);
    if rest.len() < RATE {
        bytes[take] ^= 0x01;
        bytes[RATE - 1] ^= 0x80;
    }
    std::array::from_fn(|i| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes")))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// Rotation of each lane (index `x + 5y`) in ρ.
    pub(super) const RHO: [i64; 25] =
        [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14];

    /// ι's round constants.
    pub(super) const RC: [u64; 24] = [
        0x0000000000000001,
        0x0000000000008082,
        0x800000000000808a,
        0x8000000080008000,
        0x000000000000808b,
        0x0000000080000001,
        0x8000000080008081,
        0x8000000000008009,
        0x000000000000008a,
        0x0000000000000088,
        0x0000000080008009,
        0x000000008000000a,
        0x000000008000808b,
        0x800000000000008b,
        0x8000000000008089,
        0x8000000000008003,
        0x8000000000008002,
        0x8000000000000080,
        0x000000000000800a,
        0x800000008000000a,
        0x8000000080008081,
        0x8000000000008080,
        0x0000000080000001,
        0x8000000080008008,
    ];

    /// Eight states in AVX-512 registers: `vpternlogq` does θ's three-way xor and χ in one
    /// instruction each, `vprolvq` the rotations.
    pub(super) mod avx512 {
        use std::arch::x86_64::*;

        use alloy::primitives::B256;

        use super::{RC, RHO};
        use crate::keccak_batch::{LANES, RATE, block_words};

        type V = __m512i;

        #[target_feature(enable = "avx512f")]
        fn splat(x: i64) -> V {
            _mm512_set1_epi64(x)
        }
        #[target_feature(enable = "avx512f")]
        fn xor(a: V, b: V) -> V {
            _mm512_xor_si512(a, b)
        }
        #[target_feature(enable = "avx512f")]
        fn xor3(a: V, b: V, c: V) -> V {
            _mm512_ternarylogic_epi64::<0x96>(a, b, c)
        }
        #[target_feature(enable = "avx512f")]
        fn chi(a: V, b: V, c: V) -> V {
            _mm512_ternarylogic_epi64::<0xd2>(a, b, c)
        }
        #[target_feature(enable = "avx512f")]
        fn rol(a: V, by: V) -> V {
            _mm512_rolv_epi64(a, by)
        }
        #[target_feature(enable = "avx512f")]
        fn load(row: &[u64; LANES]) -> V {
            // SAFETY: `row` is 64 readable bytes; the load is unaligned.
            unsafe { _mm512_loadu_si512(row.as_ptr().cast()) }
        }
        #[target_feature(enable = "avx512f")]
        fn store(v: V) -> [u64; LANES] {
            let mut row = [0u64; LANES];
            // SAFETY: `row` is 64 writable bytes; the store is unaligned.
            unsafe { _mm512_storeu_si512(row.as_mut_ptr().cast(), v) };
            row
        }

        #[target_feature(enable = "avx512f")]
        fn permute(s: &mut [V; 25]) {
            let rho: [V; 25] = std::array::from_fn(|i| splat(RHO[i]));
            let one = splat(1);
            for rc in RC {
                // θ: each lane xored with the parities of the two neighbouring columns.
                let c: [V; 5] = std::array::from_fn(|x| xor3(xor3(s[x], s[x + 5], s[x + 10]), s[x + 15], s[x + 20]));
                for x in 0..5 {
                    let d = xor(c[(x + 4) % 5], rol(c[(x + 1) % 5], one));
                    for y in 0..5 {
                        s[x + 5 * y] = xor(s[x + 5 * y], d);
                    }
                }
                // ρ and π.
                let mut b = [splat(0); 25];
                for x in 0..5 {
                    for y in 0..5 {
                        b[y + 5 * ((2 * x + 3 * y) % 5)] = rol(s[x + 5 * y], rho[x + 5 * y]);
                    }
                }
                // χ.
                for y in 0..5 {
                    for x in 0..5 {
                        s[x + 5 * y] = chi(b[x + 5 * y], b[(x + 1) % 5 + 5 * y], b[(x + 2) % 5 + 5 * y]);
                    }
                }
                // ι.
                s[0] = xor(s[0], splat(rc as i64));
            }
        }

        /// Hashes up to `LANES` inputs together into `out`: every input's blocks are
        /// absorbed in step, and each hash is read as soon as its input's last block went
        /// in (lanes past their end keep permuting; nothing is read from them again).
        #[target_feature(enable = "avx512f")]
        pub(in crate::keccak_batch) fn hash(inputs: &[&[u8]], out: &mut [B256]) {
            debug_assert!(inputs.len() <= LANES && inputs.len() == out.len());
            let blocks: [usize; LANES] = std::array::from_fn(|l| inputs.get(l).map_or(0, |i| i.len() / RATE + 1));
            let rounds = blocks.iter().copied().max().unwrap_or(0);
            let mut s = [splat(0); 25];
            for j in 0..rounds {
                // The inputs' words of block `j`, transposed: `words[i]` holds word `i` of
                // every input (zero for an input with no block `j`: xoring it changes
                // nothing that is read).
                let mut words = [[0u64; LANES]; RATE / 8];
                for (l, input) in inputs.iter().enumerate() {
                    if j < blocks[l] {
                        for (i, w) in block_words(input, j).into_iter().enumerate() {
                            words[i][l] = w;
                        }
                    }
                }
                for (i, row) in words.iter().enumerate() {
                    s[i] = xor(s[i], load(row));
                }
                permute(&mut s);
                if (0..inputs.len()).any(|l| blocks[l] == j + 1) {
                    let lanes: [[u64; LANES]; 4] = std::array::from_fn(|i| store(s[i]));
                    for (l, out) in out.iter_mut().enumerate().filter(|(l, _)| blocks[*l] == j + 1) {
                        let mut hash = [0u8; 32];
                        for (i, lane) in lanes.iter().enumerate() {
                            hash[i * 8..i * 8 + 8].copy_from_slice(&lane[l].to_le_bytes());
                        }
                        *out = B256::new(hash);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keccak::tests::input;

    /// Every path this CPU has, on every length around the rate's multiples (and long
    /// inputs, hashed alone between the groups), in batches of every size up to two groups
    /// of the widest, with lengths mixed inside a batch.
    #[test]
    fn every_path_hashes_as_keccak256_does() {
        let mut lengths: Vec<usize> =
            (0..=3).flat_map(|k| (0..=2 * LANES).map(move |d| (k * RATE + d).saturating_sub(LANES))).collect();
        lengths.extend([LONG, LONG + 1, 3 * LONG]);
        let paths = Path::available();
        if paths.len() < 2 {
            eprintln!("this CPU runs only {paths:?}: the AVX-512 path was not tested");
        }
        for path in paths {
            for batch in 1..=2 * LANES + 1 {
                for start in 0..lengths.len() {
                    let inputs: Vec<Vec<u8>> =
                        (0..batch).map(|i| input(lengths[(start + i * 7) % lengths.len()], i as u8)).collect();
                    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
                    let mut out = vec![B256::ZERO; batch];
                    keccak256_batch_on(path, &refs, &mut out);
                    for (i, (input, hash)) in inputs.iter().zip(&out).enumerate() {
                        assert_eq!(*hash, keccak256(input), "{path:?}, batch of {batch}, input {i} of {}", input.len());
                    }
                }
            }
        }
    }
}
