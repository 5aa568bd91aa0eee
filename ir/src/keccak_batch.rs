//! Keccak-256 of several independent inputs at once.
//!
//! A block's receipts root hashes one trie leaf per transaction (the encoded receipt with its
//! 256-byte bloom: two or three permutations each), and on blocks of a thousand cheap
//! transactions that hashing took longer than importing them: the import waited for its
//! receipts thread for a third of its time (perf, blocks 13,330,992 and 13,287,210). The
//! leaves are independent messages, so several of them go through one permutation of as many
//! states held lane by lane in vectors: eight in AVX-512 registers (`vpternlogq` does θ's
//! three-way xor and χ in one instruction each, `vprolvq` the rotations), four in AVX2 ones
//! (the state in memory, each round plane by plane as XKCP orders it; rotations as two
//! shifts); elsewhere each input is hashed alone. Whole blocks are read from the inputs in
//! place; only an input's last block is copied to be padded (copying every block, the AVX2
//! path took 4.76 µs in the benchmark below instead of 4.19 µs). `cargo bench -p
//! prescient-tools --bench receipts`: eight leaves of 300 bytes in 1.54 µs on AVX-512
//! against 6.49 µs one at a time (`keccak-asm`, another VM); on this project's AMD EPYC (Zen
//! 3, no AVX-512), 4.19 µs on AVX2 against 7.50-9.44 µs one at a time (two runs). An earlier
//! AVX2 version, with the whole state in registers (spilled from sixteen), took 6.98 µs
//! against 6.49 µs and was dropped.
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
    /// Groups of four in AVX2 vectors (the state in memory).
    Avx2,
}

impl Path {
    /// Whether this CPU can run it.
    pub fn supported(self) -> bool {
        match self {
            Path::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            Path::Avx512 | Path::Avx2 => false,
        }
    }

    /// The paths this CPU can run, widest first (`Scalar` always, last).
    pub fn available() -> Vec<Path> {
        [Path::Avx512, Path::Avx2, Path::Scalar].into_iter().filter(|p| p.supported()).collect()
    }

    /// The widest path this CPU can run.
    pub fn best() -> Path {
        static BEST: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Path::available()[0])
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
        Path::Avx512 => grouped::<LANES>(inputs, out, |g, o| unsafe { hash_lanes(x86::avx512::State::new(), g, o) }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 (asserted above).
        Path::Avx2 => grouped::<4>(inputs, out, |g, o| unsafe { hash_lanes(x86::avx2::State::new(), g, o) }),
        _ => {
            for (input, out) in inputs.iter().zip(out) {
                *out = keccak256(input);
            }
        }
    }
}

/// Hashes `inputs` in groups of up to `N` inputs of at most [`LONG`] bytes, longest first,
/// with `hash_group`; longer inputs, and a group of one, alone.
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
    // A group runs as many permutations as its longest input needs: inputs of like length go
    // together (a receipt with a few logs is two or three times a transfer's leaf), longest
    // first, so that a partial last group holds the shortest.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len() / RATE));
    for i in order {
        let input = inputs[i];
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

/// A vector path's Keccak states, one per lane ([`hash_lanes`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
trait Lanes<const N: usize> {
    /// Xors word `i` of every lane's block into word `i` of its state, then permutes every
    /// state.
    ///
    /// # Safety
    ///
    /// The CPU has the path's features.
    unsafe fn absorb(&mut self, words: &[[u64; N]; RATE / 8]);

    /// The first four words of every state (where a hash is read), word by word.
    ///
    /// # Safety
    ///
    /// As [`Lanes::absorb`].
    unsafe fn squeeze(&self) -> [[u64; N]; 4];
}

/// Hashes up to `N` inputs together into `out` in the lanes of `state`: every input's blocks
/// are absorbed in step, and each hash is read as soon as its input's last block went in
/// (lanes past their end keep permuting; nothing is read from them again).
///
/// # Safety
///
/// The CPU has the features of `state`'s path.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
unsafe fn hash_lanes<const N: usize, S: Lanes<N>>(mut state: S, inputs: &[&[u8]], out: &mut [B256]) {
    debug_assert!(inputs.len() <= N && inputs.len() == out.len());
    let blocks: [usize; N] = std::array::from_fn(|l| inputs.get(l).map_or(0, |i| i.len() / RATE + 1));
    let rounds = blocks.iter().copied().max().unwrap_or(0);
    for j in 0..rounds {
        // The inputs' words of block `j`, transposed: `words[i]` holds word `i` of every
        // input (zero for an input with no block `j`: xoring it changes nothing that is read).
        let mut words = [[0u64; N]; RATE / 8];
        for (l, input) in inputs.iter().enumerate() {
            match input.get(j * RATE..(j + 1) * RATE) {
                // A whole block needs no padding: its words are read in place.
                Some(block) => {
                    for (i, word) in block.chunks_exact(8).enumerate() {
                        words[i][l] = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                    }
                }
                None if j < blocks[l] => {
                    for (i, w) in block_words(input, j).into_iter().enumerate() {
                        words[i][l] = w;
                    }
                }
                None => {}
            }
        }
        // SAFETY: the caller's.
        unsafe { state.absorb(&words) };
        if (0..inputs.len()).any(|l| blocks[l] == j + 1) {
            // SAFETY: the caller's.
            let lanes = unsafe { state.squeeze() };
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

        use super::{RC, RHO};
        use crate::keccak_batch::{LANES, RATE};

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

        /// Eight states, lane by lane: register `i` holds word `i` of each.
        pub(in crate::keccak_batch) struct State([V; 25]);

        impl State {
            #[target_feature(enable = "avx512f")]
            pub(in crate::keccak_batch) fn new() -> Self {
                Self([splat(0); 25])
            }
        }

        impl crate::keccak_batch::Lanes<LANES> for State {
            #[target_feature(enable = "avx512f")]
            unsafe fn absorb(&mut self, words: &[[u64; LANES]; RATE / 8]) {
                for (i, row) in words.iter().enumerate() {
                    self.0[i] = xor(self.0[i], load(row));
                }
                permute(&mut self.0);
            }

            #[target_feature(enable = "avx512f")]
            unsafe fn squeeze(&self) -> [[u64; LANES]; 4] {
                std::array::from_fn(|i| store(self.0[i]))
            }
        }
    }

    /// Four states in AVX2 registers. Twenty-five of them do not fit in sixteen registers, so
    /// the state lives in memory and each round goes plane by plane (XKCP's order): the five
    /// words of one output plane are computed from θ's five column parities, rotated and
    /// combined by χ in registers, and written to the other state, which the next round
    /// reads. The rotations are two shifts and an or (no rotate instruction before AVX-512).
    pub(super) mod avx2 {
        use std::arch::x86_64::*;

        use super::RC;
        use crate::keccak_batch::RATE;

        type V = __m256i;

        /// Lanes of a group.
        const N: usize = 4;

        #[target_feature(enable = "avx2")]
        fn xor(a: V, b: V) -> V {
            _mm256_xor_si256(a, b)
        }

        /// Rotates each lane left by `L` (`R` is `64 - L`).
        #[target_feature(enable = "avx2")]
        fn rol<const L: i32, const R: i32>(v: V) -> V {
            _mm256_or_si256(_mm256_slli_epi64::<L>(v), _mm256_srli_epi64::<R>(v))
        }

        /// χ of one plane: `out[x]` from the plane's rotated words `b`.
        #[target_feature(enable = "avx2")]
        fn chi(b: [V; 5], out: &mut [V]) {
            for x in 0..5 {
                out[x] = xor(b[x], _mm256_andnot_si256(b[(x + 1) % 5], b[(x + 2) % 5]));
            }
        }

        /// One round from `a` into `e`, ι with `rc`.
        #[target_feature(enable = "avx2")]
        fn round(a: &[V; 25], e: &mut [V; 25], rc: u64) {
            let c = [
                xor(xor(xor(a[0], a[5]), xor(a[10], a[15])), a[20]),
                xor(xor(xor(a[1], a[6]), xor(a[11], a[16])), a[21]),
                xor(xor(xor(a[2], a[7]), xor(a[12], a[17])), a[22]),
                xor(xor(xor(a[3], a[8]), xor(a[13], a[18])), a[23]),
                xor(xor(xor(a[4], a[9]), xor(a[14], a[19])), a[24]),
            ];
            let d = [
                xor(c[4], rol::<1, 63>(c[1])),
                xor(c[0], rol::<1, 63>(c[2])),
                xor(c[1], rol::<1, 63>(c[3])),
                xor(c[2], rol::<1, 63>(c[4])),
                xor(c[3], rol::<1, 63>(c[0])),
            ];
            let b = [
                xor(a[0], d[0]),
                rol::<44, 20>(xor(a[6], d[1])),
                rol::<43, 21>(xor(a[12], d[2])),
                rol::<21, 43>(xor(a[18], d[3])),
                rol::<14, 50>(xor(a[24], d[4])),
            ];
            chi(b, &mut e[0..5]);
            let b = [
                rol::<28, 36>(xor(a[3], d[3])),
                rol::<20, 44>(xor(a[9], d[4])),
                rol::<3, 61>(xor(a[10], d[0])),
                rol::<45, 19>(xor(a[16], d[1])),
                rol::<61, 3>(xor(a[22], d[2])),
            ];
            chi(b, &mut e[5..10]);
            let b = [
                rol::<1, 63>(xor(a[1], d[1])),
                rol::<6, 58>(xor(a[7], d[2])),
                rol::<25, 39>(xor(a[13], d[3])),
                rol::<8, 56>(xor(a[19], d[4])),
                rol::<18, 46>(xor(a[20], d[0])),
            ];
            chi(b, &mut e[10..15]);
            let b = [
                rol::<27, 37>(xor(a[4], d[4])),
                rol::<36, 28>(xor(a[5], d[0])),
                rol::<10, 54>(xor(a[11], d[1])),
                rol::<15, 49>(xor(a[17], d[2])),
                rol::<56, 8>(xor(a[23], d[3])),
            ];
            chi(b, &mut e[15..20]);
            let b = [
                rol::<62, 2>(xor(a[2], d[2])),
                rol::<55, 9>(xor(a[8], d[3])),
                rol::<39, 25>(xor(a[14], d[4])),
                rol::<41, 23>(xor(a[15], d[0])),
                rol::<2, 62>(xor(a[21], d[1])),
            ];
            chi(b, &mut e[20..25]);
            e[0] = xor(e[0], _mm256_set1_epi64x(rc as i64));
        }

        #[target_feature(enable = "avx2")]
        fn permute(a: &mut [V; 25]) {
            let mut e = [_mm256_setzero_si256(); 25];
            for rc in RC.chunks_exact(2) {
                round(a, &mut e, rc[0]);
                round(&e, a, rc[1]);
            }
        }

        /// Four states, lane by lane: entry `i` holds word `i` of each.
        pub(in crate::keccak_batch) struct State([V; 25]);

        impl State {
            #[target_feature(enable = "avx2")]
            pub(in crate::keccak_batch) fn new() -> Self {
                Self([_mm256_setzero_si256(); 25])
            }
        }

        impl crate::keccak_batch::Lanes<N> for State {
            #[target_feature(enable = "avx2")]
            unsafe fn absorb(&mut self, words: &[[u64; N]; RATE / 8]) {
                for (i, row) in words.iter().enumerate() {
                    // SAFETY: `row` is 32 readable bytes; the load is unaligned.
                    let row = unsafe { _mm256_loadu_si256(row.as_ptr().cast()) };
                    self.0[i] = xor(self.0[i], row);
                }
                permute(&mut self.0);
            }

            #[target_feature(enable = "avx2")]
            unsafe fn squeeze(&self) -> [[u64; N]; 4] {
                std::array::from_fn(|i| {
                    let mut row = [0u64; N];
                    // SAFETY: `row` is 32 writable bytes; the store is unaligned.
                    unsafe { _mm256_storeu_si256(row.as_mut_ptr().cast(), self.0[i]) };
                    row
                })
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
        if paths.len() < 3 {
            eprintln!("this CPU runs only {paths:?}: the other vector paths were not tested");
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
