//! `prescient bench machine`: the two properties of the machine that move prescient's ratios
//! most, measured in a second, to report beside a measurement.
//!
//! - **Load latency by working set.** A hit is a few hundred nanoseconds of work around a
//!   handful of cold loads (its program, the accounts it reads), while revm's transaction is
//!   mostly computation: when a load past the core's own cache costs more, the import slows
//!   down more than sequential revm does, and the ratio falls. On one 2-core VM, on two days,
//!   the same binary measured `evaluate`'s block import at 4.1x and at 3.2x, with the
//!   per-transaction hits' warm times unchanged; on the second day a load past 2 MiB took
//!   145-260 ns.
//! - **Round trip between two threads** (one cache line handed back and forth): what the
//!   receipts thread and the parallel fallback pay for each hand-over.
//! - **Two threads' compute against one's** ([`compute_scaling`]): 2 on two free cores, less
//!   when the two threads share one core's execution units. A VM's two vCPUs may be two
//!   hyperthreads of one host core some of the time: on one 2-vCPU VM, within one hour,
//!   `openssl speed -multi 2 rsa2048` did 1.23x to 2.1x the signatures of one process, and the
//!   parallel fallback's per-block ratios on the same schedule moved by ±15% from one
//!   invocation to the next. Replay reports it beside the parallel figures.
//!
//! The latency is a pointer chase through a random cyclic permutation of cache lines (each
//! load's address is the previous load's value, so no two overlap); the round trip, two
//! threads taking turns on one atomic.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// One working-set size and its load latency.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Latency {
    /// Working set, bytes.
    pub bytes: usize,
    /// Mean time of one dependent load, ns.
    pub load_ns: f64,
}

/// What [`probe`] measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MachineProbe {
    /// Load latency by working set, smallest first.
    pub latency: Vec<Latency>,
    /// Mean time for one round trip of a cache line between two threads, ns (`None` when a
    /// second thread could not be started).
    pub round_trip_ns: Option<f64>,
    /// Work two threads got done at once against one thread alone ([`compute_scaling`]).
    pub compute_scaling: Option<f64>,
}

/// Cache line size assumed by the chase: one `u64` index per 64 bytes.
const LINE_WORDS: usize = 8;

/// Working sets probed: inside a core's L1 and L2, then past them.
pub const SIZES: [usize; 5] = [32 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20];

/// Measures every size of [`SIZES`] and the round trip.
pub fn probe() -> MachineProbe {
    let latency = SIZES.iter().map(|&bytes| Latency { bytes, load_ns: load_latency(bytes, 2_000_000) }).collect();
    MachineProbe {
        latency,
        round_trip_ns: round_trip(100_000),
        compute_scaling: compute_scaling(Duration::from_millis(200)),
    }
}

/// Hashes two threads compute at once, both running for `each`, over the hashes the calling
/// thread computes alone in `each` (the mean of a run before and one after, so that a change
/// of the machine's state halfway does not decide the figure alone): what two threads can
/// gain over one at best. 2.0 on two equal free cores, about 1.2 to 1.3 on two hyperthreads
/// of one core, more than 2 when the calling thread's core is the slower one (another
/// tenant's load). `None` when no second thread could be started.
pub fn compute_scaling(each: Duration) -> Option<f64> {
    hash_rate(each / 10);
    let before = hash_rate(each);
    let start = Arc::new(std::sync::Barrier::new(2));
    let other = {
        let start = Arc::clone(&start);
        std::thread::Builder::new()
            .name("prescient-probe".into())
            .spawn(move || {
                start.wait();
                hash_rate(each)
            })
            .ok()?
    };
    start.wait();
    let mine = hash_rate(each);
    let theirs = other.join().ok()?;
    let after = hash_rate(each);
    let alone = (before + after) / 2.0;
    (alone > 0.0).then(|| (mine + theirs) / alone)
}

/// Keccak-256 hashes of one rate block per second, each of the previous hash (a dependent
/// chain of integer work, as an interpreter's), for about `each`.
fn hash_rate(each: Duration) -> f64 {
    let mut block = [0u8; 136];
    let mut hashes = 0u64;
    let started = Instant::now();
    while started.elapsed() < each {
        for _ in 0..256 {
            let hash = alloy::primitives::keccak256(block);
            block[..32].copy_from_slice(hash.as_slice());
        }
        hashes += 256;
    }
    std::hint::black_box(block);
    hashes as f64 / started.elapsed().as_secs_f64()
}

/// Mean ns of one dependent load over a working set of `bytes` (at least one line), `loads`
/// loads after one warming pass.
pub fn load_latency(bytes: usize, loads: usize) -> f64 {
    let lines = (bytes / (LINE_WORDS * 8)).max(1);
    let next = chase(lines, LINE_WORDS);
    let mut at = 0;
    for _ in 0..lines {
        at = next[at];
    }
    let started = Instant::now();
    for _ in 0..loads {
        at = next[at];
    }
    let elapsed = started.elapsed();
    std::hint::black_box(at);
    elapsed.as_nanos() as f64 / loads.max(1) as f64
}

/// The chase through `lines` lines of `stride` words: entry `line * stride` holds the index
/// of the next line's first word, in a random order that is one cycle through all of them
/// (Sattolo's shuffle, from a fixed-seed xorshift so that runs chase the same order).
fn chase(lines: usize, stride: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lines).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..lines).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % i as u64) as usize);
    }
    let mut next = vec![0usize; lines * stride];
    for (k, &line) in order.iter().enumerate() {
        next[line * stride] = order[(k + 1) % lines] * stride;
    }
    next
}

/// Mean ns of one round trip of a cache line between this thread and a second one, over
/// `trips`; `None` when no thread could be started or the other side stalled for a second.
pub fn round_trip(trips: u64) -> Option<f64> {
    let turn = Arc::new(AtomicU64::new(0));
    let other = {
        let turn = Arc::clone(&turn);
        std::thread::Builder::new()
            .name("prescient-probe".into())
            .spawn(move || {
                for i in 0..trips {
                    if !wait_for(&turn, 2 * i + 1) {
                        return;
                    }
                    turn.store(2 * i + 2, Ordering::Release);
                }
            })
            .ok()?
    };
    let started = Instant::now();
    let mut done = true;
    for i in 0..trips {
        turn.store(2 * i + 1, Ordering::Release);
        if !wait_for(&turn, 2 * i + 2) {
            done = false;
            // Let the other side see a value it never waits for, so it gives up too.
            turn.store(u64::MAX, Ordering::Release);
            break;
        }
    }
    let elapsed = started.elapsed();
    let _ = other.join();
    done.then(|| elapsed.as_nanos() as f64 / trips.max(1) as f64)
}

/// Spins until `turn` holds `value`; `false` after a second without it (or once it holds
/// `u64::MAX`, the other side's give-up).
fn wait_for(turn: &AtomicU64, value: u64) -> bool {
    let mut spins = 0u32;
    let mut since = None;
    loop {
        match turn.load(Ordering::Acquire) {
            v if v == value => return true,
            u64::MAX => return false,
            _ => {}
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1 << 16) {
            // One core for both threads (or a descheduled peer): let it run.
            std::thread::yield_now();
            if since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1) {
                return false;
            }
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chase_visits_every_line_in_one_cycle() {
        for bytes in [64, 640, 64 << 10] {
            let ns = load_latency(bytes, 1000);
            assert!(ns.is_finite() && ns > 0.0, "{bytes}: {ns}");
        }
        let lines = 1000;
        let next = chase(lines, 1);
        let (mut at, mut seen) = (0, 0);
        loop {
            at = next[at];
            seen += 1;
            if at == 0 {
                break;
            }
        }
        assert_eq!(seen, lines);
    }

    #[test]
    fn two_threads_compute_a_positive_multiple_of_one() {
        let scaling = compute_scaling(Duration::from_millis(20)).expect("a second thread");
        // No bound on a loaded test machine but that both threads did some work.
        assert!(scaling.is_finite() && scaling > 0.0, "{scaling}");
    }

    #[test]
    fn a_round_trip_completes() {
        let ns = round_trip(1000).expect("a second thread");
        assert!(ns.is_finite() && ns > 0.0);
    }
}
