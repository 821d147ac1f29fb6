//! A mutation fuzzer for the TIFF reader and its ImageJ/calibration parsing.
//!
//!     fuzz_tiff [--seconds N | --iterations N] [--seed S] [--corpus DIR]
//!
//! Seeds are stacks the project writes itself (8/16/32-bit, float, hyperstacks, calibrated
//! or not, Deflate) plus any TIFFs in `--corpus` (e.g. ../shared/data/bbbc050/train/images).
//! Each input is a seed mutated by a few of: bit flips, bytes set to boundary values,
//! 32-bit fields set to huge/zero values (sizes, offsets, counts), ImageJ header lines
//! replaced by absurd numbers, truncation, and splices of two seeds. Every input is read
//! with `qcanet::io::tiff::read` and, when it reads, its volume and calibration are used.
//!
//! The reader turns panics of the `tiff` crate into errors; those inputs are counted and
//! the first five kept (`fuzz-crashes/caught-*.tif`). Failure is any other panic (caught
//! and reported with the input saved to `fuzz-crashes/`), an
//! abort or a crash (the process dies: the input being tried is always in
//! `fuzz-crashes/current.tif`), or one input taking over 10 s (a hang; reported and saved).
//! Without `--corpus`, everything is generated: the run needs no data.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qcanet::io::tiff::{self, Samples};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn generated_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let mut push = |name: &str, samples: Samples, dims: [usize; 3], frames: usize, vox: Option<[f64; 3]>| {
        let p = dir.join(name);
        tiff::write(&p, &samples, dims, frames, vox).expect("seed");
        seeds.push(std::fs::read(&p).unwrap());
    };
    let e = qcanet::synth::generate(&qcanet::synth::SynthParams { dims: [6, 24, 20], n_nuclei: 3, seed: 3, ..Default::default() });
    push("u16.tif", Samples::U16(e.image.clone()), e.dims, 1, Some(e.voxel_size));
    push("u16_uncal.tif", Samples::U16(e.image.clone()), e.dims, 1, None);
    push("u8.tif", Samples::U8(e.image.iter().map(|&v| (v >> 8) as u8).collect()), e.dims, 1, Some([2.0, 0.5, 0.5]));
    push("f32.tif", Samples::F32(e.image.iter().map(|&v| v as f32 / 7.0).collect()), e.dims, 1, Some([1.0, 1.0, 1.0]));
    push("labels32.tif", Samples::U32(e.labels.iter().map(|&l| l * 70_000).collect()), e.dims, 1, Some(e.voxel_size));
    let mut two = e.image.clone();
    two.extend(&e.image);
    push("frames.tif", Samples::U16(two), e.dims, 2, Some(e.voxel_size));
    seeds
}

fn corpus_seeds(dir: &Path, max: usize) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "tif")).collect())
        .unwrap_or_default();
    files.sort();
    files.into_iter().take(max).filter_map(|p| std::fs::read(p).ok()).collect()
}

const ABSURD: [&str; 8] = ["0", "-1", "4294967296", "9223372036854775808", "18446744073709551615", "1e308", "NaN", "1e-300"];

fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if v.is_empty() {
            break;
        }
        match rng.below(7) {
            0 => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len());
                v[i] = [0u8, 1, 0x7F, 0x80, 0xFF][rng.below(5)];
            }
            2 => {
                // a 32-bit field (a size, count or offset in an IFD) set to a boundary value
                if v.len() >= 4 {
                    let i = rng.below(v.len() - 3);
                    let x: u32 = [0, 1, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x4000_0000, rng.next() as u32][rng.below(7)];
                    v[i..i + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
            3 => {
                // an ImageJ header number replaced by an absurd one
                if let Some(at) = find(&v, b"ImageJ=") {
                    let keys: [&[u8]; 5] = [b"slices=", b"frames=", b"channels=", b"spacing=", b"images="];
                    let key = keys[rng.below(keys.len())];
                    if let Some(k) = find(&v[at..], key) {
                        let start = at + k + key.len();
                        let end = (start..v.len()).find(|&j| v[j] == b'\n').unwrap_or(v.len());
                        let mut out = v[..start].to_vec();
                        out.extend(ABSURD[rng.below(ABSURD.len())].as_bytes());
                        out.extend(&v[end..]);
                        v = out;
                    }
                }
            }
            4 => {
                if let Some(at) = find(&v, b"unit=") {
                    let units: [&[u8]; 6] = [b"mm", b"nm", b"inch", b"pixel", b"", b"\\u00B5m"];
                    let start = at + 5;
                    let end = (start..v.len()).find(|&j| v[j] == b'\n').unwrap_or(v.len());
                    let mut out = v[..start].to_vec();
                    out.extend(units[rng.below(units.len())]);
                    out.extend(&v[end..]);
                    v = out;
                }
            }
            5 => {
                let n = rng.below(v.len() + 1);
                v.truncate(n);
            }
            _ => {
                if !other.is_empty() {
                    let cut = rng.below(v.len());
                    let from = rng.below(other.len());
                    v.truncate(cut);
                    v.extend(&other[from..]);
                }
            }
        }
    }
    v
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Reads the file and uses what it says, as `qcanet segment` would before inference.
/// `Ok` when it read as a stack, else the reader's error message.
fn exercise(path: &Path) -> Result<(), String> {
    let r = tiff::read(path);
    if let Ok(st) = &r {
        let _ = st.voxel_size_um();
        for t in 0..st.frames.min(2) {
            for c in 0..st.channels.min(2) {
                if let Ok(v) = st.volume(t, c) {
                    let _ = v.to_f32().len();
                    let _ = v.to_labels();
                }
            }
        }
    }
    r.map(|_| ()).map_err(|e| e.to_string())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut iterations, mut seed, mut corpus) = (None, None, 1u64, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse::<u64>().ok()),
            "--iterations" => iterations = args.next().and_then(|v| v.parse::<u64>().ok()),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "--corpus" => corpus = args.next().map(PathBuf::from),
            other => {
                eprintln!("fuzz_tiff: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let work = tempfile::tempdir().unwrap();
    let crashes = PathBuf::from("fuzz-crashes");
    std::fs::create_dir_all(&crashes).unwrap();
    let mut seeds = generated_seeds(work.path());
    if let Some(c) = &corpus {
        seeds.extend(corpus_seeds(c, 20));
    }
    // a panic is reported by us, not printed by the default hook for each one
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(seed);
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let current = crashes.join("current.tif");
    // a hang never returns: a watchdog ends the run, and the input is in current.tif
    let started = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clock = Instant::now();
    {
        let started = std::sync::Arc::clone(&started);
        let t0 = clock;
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let s = started.load(std::sync::atomic::Ordering::Relaxed);
            if s > 0 && (t0.elapsed().as_millis() as u64).saturating_sub(s) > 30_000 {
                eprintln!("fuzz_tiff: hang (over 30 s on one input); the input is fuzz-crashes/current.tif");
                std::process::exit(1);
            }
        });
    }
    let (mut n, mut read_ok, mut failures, mut caught) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    loop {
        if iterations.is_some_and(|i| n >= i)
            || deadline.is_some_and(|d| Instant::now() >= d)
            || (iterations.is_none() && deadline.is_none() && n >= 10_000)
        {
            break;
        }
        let a = rng.below(seeds.len());
        let b = rng.below(seeds.len());
        let input = mutate(&seeds[a], &seeds[b], &mut rng);
        std::fs::write(&current, &input).unwrap();
        let t = Instant::now();
        started.store(clock.elapsed().as_millis() as u64 + 1, std::sync::atomic::Ordering::Relaxed);
        let r = std::panic::catch_unwind(|| exercise(&current));
        started.store(0, std::sync::atomic::Ordering::Relaxed);
        let took = t.elapsed();
        slowest = slowest.max(took);
        if r.is_err() || took > Duration::from_secs(10) {
            failures += 1;
            let what = if r.is_err() { "panic" } else { "hang" };
            let keep = crashes.join(format!("{what}-{seed}-{n}.tif"));
            std::fs::write(&keep, &input).unwrap();
            eprintln!("fuzz_tiff: {what} on input {n} ({:.1} s), saved as {}", took.as_secs_f64(), keep.display());
        } else if matches!(r, Ok(Ok(()))) {
            read_ok += 1;
        } else if caught < 5 && matches!(&r, Ok(Err(e)) if e.contains("the decoder failed")) {
            // a panic in the decoder that the reader caught: not a failure, but worth a look
            caught += 1;
            let keep = crashes.join(format!("caught-{seed}-{n}.tif"));
            std::fs::write(&keep, &input).unwrap();
        }
        n += 1;
    }
    let _ = std::fs::remove_file(&current);
    println!(
        "fuzz_tiff: {n} inputs in {:.1} s from {} seeds ({read_ok} read as stacks, the rest refused with an error); slowest {:.3} s; {failures} failures; decoder panics caught by the reader: {caught}{} (kept as fuzz-crashes/caught-*.tif)",
        start.elapsed().as_secs_f64(),
        seeds.len(),
        slowest.as_secs_f64(),
        if caught >= 5 { " or more" } else { "" }
    );
    if failures > 0 {
        std::process::exit(1);
    }
}
