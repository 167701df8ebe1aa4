//! `parley-fuzz TARGET --seconds N [--seed S]`: runs one fuzz target for a while on random
//! (or given) seeds, prints iterations per second, and writes crashing inputs to `crashes/`.
//! `parley-fuzz --list` names the targets; `parley-fuzz seeds [TARGET...]` rewrites the seed
//! corpus (of the targets named, or all).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(first) = args.first() else {
        bail!("usage: parley-fuzz TARGET [--seconds N] [--seed S] | --list | seeds [TARGET...]");
    };
    if first == "--list" {
        for target in parley_fuzz::targets() {
            println!("{:<32} {}", target.name, target.about);
        }
        return Ok(());
    }
    if first == "seeds" {
        let count = parley_fuzz::seeds::write(&args[1..])?;
        println!("wrote {count} seed files");
        return Ok(());
    }
    let mut seconds = 60u64;
    let mut seed: Option<u64> = None;
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => seconds = value.parse().context("--seconds")?,
            "--seed" => seed = Some(value.parse().context("--seed")?),
            _ => bail!("unknown flag {flag}"),
        }
    }
    let names: Vec<&str> = if first == "all" {
        parley_fuzz::targets().iter().map(|t| t.name).collect()
    } else {
        vec![first.as_str()]
    };
    // Panics are expected findings: keep them quiet, report them ourselves.
    std::panic::set_hook(Box::new(|_| {}));
    let mut found = 0;
    for name in names {
        let target =
            parley_fuzz::find(name).with_context(|| format!("no target {name} (see --list)"))?;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut total = 0u64;
        let mut crashes = Vec::new();
        let mut crash_count = 0usize;
        let mut runs = 0;
        // One seed per round of a million iterations, so that a crash can be found again.
        while Instant::now() < deadline {
            let round_seed = seed.map_or_else(rand::random, |s| s.wrapping_add(runs));
            runs += 1;
            let round_start = total;
            let outcome = parley_fuzz::run(target, round_seed, false, |done| {
                done < 1_000_000 && (done % 64 != 0 || Instant::now() < deadline)
            });
            total += outcome.iterations;
            crash_count += outcome.crashes.len();
            for crash in outcome.crashes {
                // One input per distinct panic message is enough to reproduce it.
                if crashes
                    .iter()
                    .any(|c: &parley_fuzz::Crash| c.message == crash.message)
                    || crashes.len() >= 20
                {
                    continue;
                }
                let path = write_crash(&crash)?;
                println!(
                    "{name}: CRASH (seed {round_seed}, after {} iterations): {} -> {}",
                    total - round_start,
                    crash.message,
                    path.display()
                );
                crashes.push(crash);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{name}: {total} iterations in {elapsed:.0} s ({:.0}/s), {crash_count} crashes ({} kept)",
            total as f64 / elapsed,
            crashes.len()
        );
        found += crash_count;
    }
    if found > 0 {
        bail!(
            "{found} crashing inputs written to {}",
            parley_fuzz::crashes_dir().display()
        );
    }
    Ok(())
}

fn write_crash(crash: &parley_fuzz::Crash) -> Result<std::path::PathBuf> {
    use std::hash::{Hash, Hasher};
    let dir = parley_fuzz::crashes_dir();
    std::fs::create_dir_all(&dir)?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    crash.input.hash(&mut hasher);
    let path = dir.join(format!("{}-{:016x}", crash.target, hasher.finish()));
    std::fs::write(&path, &crash.input)?;
    Ok(path)
}
