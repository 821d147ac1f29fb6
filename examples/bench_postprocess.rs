//! Times the Rust EDT + marker watershed and the metrics on raw volumes written by
//! benches/compare.py (which times scipy / scikit-image / NumPy on the same data).
//!
//!   bench_postprocess DIR NZ NY NX REPEAT
//! DIR holds mask.u8, markers.u32, gt.u32, pred.u32 (C order); writes labels.u32 there
//! and prints "edt_watershed_s METRIC" and "metrics_s METRIC" (medians).
use std::time::Instant;

fn read<T: Copy>(p: &std::path::Path, n: usize) -> Vec<T> {
    let b = std::fs::read(p).unwrap();
    assert_eq!(b.len(), n * std::mem::size_of::<T>(), "{}", p.display());
    let mut v = Vec::<T>::with_capacity(n);
    unsafe {
        std::ptr::copy_nonoverlapping(b.as_ptr(), v.as_mut_ptr() as *mut u8, b.len());
        v.set_len(n);
    }
    v
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&a[1]);
    let dims = [a[2].parse().unwrap(), a[3].parse().unwrap(), a[4].parse().unwrap()];
    let repeat: usize = a[5].parse().unwrap();
    let n = dims[0] * dims[1] * dims[2];
    let mask: Vec<bool> = read::<u8>(&dir.join("mask.u8"), n).into_iter().map(|v| v != 0).collect();
    let markers = read::<u32>(&dir.join("markers.u32"), n);
    let gt = read::<u32>(&dir.join("gt.u32"), n);
    let pred = read::<u32>(&dir.join("pred.u32"), n);
    let vs = [1.75, 0.8, 0.8];
    let run = || {
        let land = qcanet::edt::negative_edt(&mask, dims, vs);
        qcanet::watershed::watershed(&land, &markers, &mask, dims, qcanet::Connectivity::Faces6).unwrap()
    };
    let labels = run();
    let mut t = Vec::new();
    for _ in 0..repeat {
        let s = Instant::now();
        std::hint::black_box(run());
        t.push(s.elapsed().as_secs_f64());
    }
    let mut tm = Vec::new();
    for _ in 0..repeat {
        let s = Instant::now();
        std::hint::black_box(qcanet::evaluate(&pred, &gt).unwrap());
        tm.push(s.elapsed().as_secs_f64());
    }
    let mut te = Vec::new();
    for _ in 0..repeat {
        let s = Instant::now();
        std::hint::black_box(qcanet::edt::edt(&mask, dims, vs));
        te.push(s.elapsed().as_secs_f64());
    }
    let land: Vec<f64> = qcanet::edt::edt(&mask, dims, vs).into_iter().map(|d| -d).collect();
    let mut tw = Vec::new();
    for _ in 0..repeat {
        let s = Instant::now();
        std::hint::black_box(qcanet::watershed::watershed(&land, &markers, &mask, dims, qcanet::Connectivity::Faces6).unwrap());
        tw.push(s.elapsed().as_secs_f64());
    }
    let bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("labels.u32"), bytes).unwrap();
    println!("edt_watershed_s {}", median(t));
    println!("metrics_s {}", median(tm));
    println!("edt_s {}", median(te));
    println!("watershed_s {}", median(tw));
}
