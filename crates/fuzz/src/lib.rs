//! Fuzz targets for every decoder that reads network or disk input, on stable Rust.
//!
//! Each target takes arbitrary bytes and may only answer with a value or a clear error: a panic
//! is a finding. [`run`] feeds a target its seed corpus (`corpus/<target>/`) and then inputs
//! mutated from it by a seeded RNG, so a run is reproducible from its seed. `cargo test -p
//! parley-fuzz` runs every target briefly on a fixed seed; the `parley-fuzz` binary runs one for
//! longer on random seeds and keeps what crashes in `crashes/`.
#![forbid(unsafe_code)]

pub mod mutate;
pub mod seeds;
pub mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::SeedableRng;

/// One fuzz target: a decoder and what the code that calls it does next.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    /// What it decodes, for `parley-fuzz --list`.
    pub about: &'static str,
    /// Longest input the mutator builds (the decoder's own limit is tested by seeds).
    pub max_len: usize,
    pub run: fn(&[u8]),
}

/// Every target.
pub fn targets() -> &'static [Target] {
    targets::ALL
}

pub fn find(name: &str) -> Option<&'static Target> {
    targets().iter().find(|t| t.name == name)
}

/// Where a target's seed corpus lives in the source tree.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Where crashing inputs are written.
pub fn crashes_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crashes")
}

/// The checked-in seeds of a target, sorted by file name (empty if there are none).
pub fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(corpus_dir(target)) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// An input that made a target panic.
#[derive(Debug)]
pub struct Crash {
    pub target: &'static str,
    pub input: Vec<u8>,
    pub message: String,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {} panicked ({}) on {} bytes: {}",
            self.target,
            self.message,
            self.input.len(),
            hex::encode(&self.input[..self.input.len().min(512)])
        )
    }
}

/// Runs `target` on one input; a panic becomes a [`Crash`].
pub fn run_one(target: &Target, input: &[u8]) -> Result<(), Crash> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into());
        Crash {
            target: target.name,
            input: input.to_vec(),
            message,
        }
    })
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub iterations: u64,
    pub crashes: Vec<Crash>,
}

/// Runs the corpus, then mutated inputs from a seeded RNG until `keep_going` says stop
/// (it is asked with the number of iterations so far). Stops at the first crash unless
/// `all_crashes`.
pub fn run(
    target: &Target,
    seed: u64,
    all_crashes: bool,
    mut keep_going: impl FnMut(u64) -> bool,
) -> Outcome {
    let mut corpus = load_corpus(target.name);
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut outcome = Outcome::default();
    for input in &corpus {
        outcome.iterations += 1;
        if let Err(crash) = run_one(target, input) {
            outcome.crashes.push(crash);
            if !all_crashes {
                return outcome;
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    while keep_going(outcome.iterations) {
        let input = mutate::mutate(&mut rng, &corpus, target.max_len);
        outcome.iterations += 1;
        if let Err(crash) = run_one(target, &input) {
            outcome.crashes.push(crash);
            if !all_crashes {
                return outcome;
            }
        }
    }
    outcome
}

/// The fixed-seed run `cargo test` does: the corpus plus `iterations` mutated inputs.
pub fn check(name: &str, iterations: u64) {
    let target = find(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    assert!(
        !load_corpus(name).is_empty(),
        "target {name} has no seed corpus in {}",
        corpus_dir(name).display()
    );
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let outcome = run(target, seed, false, |done| done < iterations);
    if let Some(crash) = outcome.crashes.first() {
        panic!("{crash}");
    }
}
