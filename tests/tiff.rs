//! TIFF stacks: types, compressions, ImageJ hyperstacks and calibration, bad files, atomic writes.
use std::fs::File;

use qcanet::io::tiff::{read, write, write_labels, Samples};
use qcanet::Error;
use tiff::encoder::{colortype, Compression, TiffEncoder};
use tiff::tags::Tag;

#[test]
fn round_trip_every_sample_type_with_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let dims = [3, 4, 5];
    let n = 60;
    let cases = [
        Samples::U8((0..n).map(|i| i as u8).collect()),
        Samples::U16((0..n).map(|i| (i * 1000) as u16).collect()),
        Samples::U32((0..n).map(|i| i as u32 * 100_000).collect()),
        Samples::F32((0..n).map(|i| i as f32 * 0.5 - 3.0).collect()),
    ];
    for (i, s) in cases.into_iter().enumerate() {
        let p = dir.path().join(format!("type{i}.tif"));
        write(&p, &s, dims, 1, Some([1.75, 0.8, 0.4])).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(r.samples, s);
        assert_eq!((r.dims, r.frames, r.channels), (dims, 1, 1));
        let v = r.voxel_size_um().unwrap();
        for (a, b) in v.iter().zip([1.75, 0.8, 0.4]) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }
}

#[test]
fn labels_use_16_bits_when_they_fit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("l.tif");
    write_labels(&p, &[0, 1, 65535, 2], [1, 2, 2], 1, None).unwrap();
    assert!(matches!(read(&p).unwrap().samples, Samples::U16(_)));
    write_labels(&p, &[0, 1, 65536, 2], [1, 2, 2], 1, None).unwrap();
    assert_eq!(read(&p).unwrap().samples, Samples::U32(vec![0, 1, 65536, 2]));
}

/// Writes pages with the tiff crate directly (other compressions, other headers).
fn write_raw(path: &std::path::Path, pages: &[Vec<u16>], w: u32, h: u32, comp: Compression, desc: Option<&str>) {
    let mut enc = TiffEncoder::new(File::create(path).unwrap()).unwrap().with_compression(comp);
    for (i, p) in pages.iter().enumerate() {
        let mut img = enc.new_image::<colortype::Gray16>(w, h).unwrap();
        if i == 0 {
            if let Some(d) = desc {
                img.encoder().write_tag(Tag::ImageDescription, d).unwrap();
            }
        }
        img.write_data(p).unwrap();
    }
}

#[test]
fn reads_lzw_and_uncompressed_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let pages: Vec<Vec<u16>> = (0..4).map(|z| (0..30).map(|i| (z * 100 + i) as u16).collect()).collect();
    for (name, c) in [("lzw.tif", Compression::Lzw), ("raw.tif", Compression::Uncompressed)] {
        let p = dir.path().join(name);
        write_raw(&p, &pages, 6, 5, c, None);
        let r = read(&p).unwrap();
        assert_eq!(r.dims, [4, 5, 6]);
        assert_eq!(r.samples, Samples::U16(pages.concat()));
        assert_eq!(r.voxel_size, None, "no calibration in the file");
    }
}

#[test]
fn imagej_hyperstack_channels_and_frames() {
    let dir = tempfile::tempdir().unwrap();
    // 2 frames x 3 slices x 2 channels, ImageJ order: channel fastest, then slice, then frame
    let pages: Vec<Vec<u16>> = (0..12).map(|k| vec![k as u16; 4]).collect();
    let p = dir.path().join("hyper.tif");
    let desc = "ImageJ=1.54f\nimages=12\nchannels=2\nslices=3\nframes=2\nhyperstack=true\nunit=nm\nspacing=500\n";
    write_raw(&p, &pages, 2, 2, Compression::Uncompressed, Some(desc));
    let r = read(&p).unwrap();
    assert_eq!((r.dims, r.channels, r.frames), ([3, 2, 2], 2, 2));
    // frame 1, channel 1: pages 7, 9, 11
    assert_eq!(r.volume(1, 1).unwrap(), Samples::U16([7u16, 9, 11].iter().flat_map(|&k| vec![k; 4]).collect()));
    assert!(r.volume(2, 0).is_err());
    // spacing 500 nm -> 0.5 um in z; the encoder's default resolution (1 pixel per unit)
    // is 1 nm laterally, as ImageJ itself would read this file
    let v = r.voxel_size_um().unwrap();
    assert!((v[0] - 0.5).abs() < 1e-12 && (v[1] - 0.001).abs() < 1e-12 && (v[2] - 0.001).abs() < 1e-12, "{v:?}");

    let q = dir.path().join("series.tif");
    let data: Vec<u16> = (0..2 * 3 * 4).map(|i| i as u16).collect();
    write(&q, &Samples::U16(data.clone()), [3, 2, 2], 2, Some([2.0, 0.5, 0.5])).unwrap();
    let r = read(&q).unwrap();
    assert_eq!((r.frames, r.dims), (2, [3, 2, 2]));
    assert_eq!(r.volume(1, 0).unwrap(), Samples::U16(data[12..].to_vec()));
}

#[test]
fn truncated_corrupt_and_colour_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.tif");
    let v: Vec<u16> = (0..64 * 64 * 8).map(|i| (i * 7 % 65536) as u16).collect();
    write(&good, &Samples::U16(v), [8, 64, 64], 1, None).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.tif");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    match read(&cut) {
        Err(Error::Tiff { path, .. }) => assert!(path.ends_with("cut.tif")),
        other => panic!("truncated file: {other:?}"),
    }
    let junk = dir.path().join("junk.tif");
    std::fs::write(&junk, b"not a tiff at all").unwrap();
    assert!(matches!(read(&junk), Err(Error::Tiff { .. })));
    assert!(matches!(read(dir.path().join("absent.tif")), Err(Error::Io { .. })));
    let rgb = dir.path().join("rgb.tif");
    let mut enc = TiffEncoder::new(File::create(&rgb).unwrap()).unwrap();
    enc.write_image::<colortype::RGB8>(2, 2, &[0u8; 12]).unwrap();
    drop(enc);
    match read(&rgb) {
        Err(Error::Unsupported(m)) => assert!(m.contains("colour"), "{m}"),
        other => panic!("rgb: {other:?}"),
    }
}

#[test]
fn a_failed_write_leaves_the_old_file_and_no_debris() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("result.tif");
    write_labels(&p, &[1, 2, 3, 4], [1, 2, 2], 1, None).unwrap();
    let before = std::fs::read(&p).unwrap();
    // wrong size: refused before anything is written
    assert!(write_labels(&p, &[1, 2, 3], [1, 2, 2], 1, None).is_err());
    assert_eq!(std::fs::read(&p).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "temporary files left behind: {names:?}");
    // a folder that does not exist: "cannot write", never "cannot read"
    match write_labels(dir.path().join("missing/x.tif"), &[1], [1, 1, 1], 1, None) {
        Err(e @ Error::Write { .. }) => assert!(e.to_string().starts_with("cannot write"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bigtiff_is_read_page_by_page_like_classic_tiff() {
    let d = tempfile::tempdir().unwrap();
    let (w, h) = (33u32, 21u32);
    let pages: Vec<Vec<u16>> = (0..5u16).map(|p| (0..w * h).map(|i| (i as u16).wrapping_mul(7) ^ p).collect()).collect();
    let big = d.path().join("big.tif");
    {
        let mut enc = TiffEncoder::new_big(File::create(&big).unwrap()).unwrap();
        for p in &pages {
            enc.write_image::<colortype::Gray16>(w, h, p).unwrap();
        }
    }
    let classic = d.path().join("classic.tif");
    write_raw(&classic, &pages, w, h, Compression::Uncompressed, None);
    let (a, b) = (read(&big).unwrap(), read(&classic).unwrap());
    assert_eq!((a.dims, &a.samples), (b.dims, &b.samples));
    // streamed: any page, in any order, equals the whole read's
    let mut r = qcanet::io::tiff::StackReader::open(&big).unwrap();
    assert_eq!((r.info.pages, r.info.dims, r.info.bits), (5, [5, 21, 33], 16));
    for p in [3, 0, 4, 1, 1, 2] {
        assert_eq!(r.read_page(p).unwrap(), Samples::U16(pages[p].clone()), "page {p}");
    }
    assert!(r.read_page(5).is_err());
}

#[test]
fn page_writer_switches_to_bigtiff_past_classic_limits_and_streams_pages() {
    use qcanet::io::tiff::{write_pages, PageLayout, SampleKind, BIGTIFF_FROM};
    // the choice, without writing gigabytes: 300 x 2048 x 2048 u32 labels are BigTIFF
    let layout = |dims: [usize; 3], kind| PageLayout { dims, frames: 1, voxel_um: None, interval: None, kind };
    assert!(layout([300, 2048, 2048], SampleKind::U32).big());
    assert!(!layout([153, 1024, 1024], SampleKind::U32).big());
    assert!(BIGTIFF_FROM < 4 << 30);
    // pages come from the closure one at a time, in order; an error there fails the write
    // and leaves nothing
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("l.tif");
    let l = layout([3, 4, 5], SampleKind::U16);
    let mut asked = Vec::new();
    write_pages(&out, &l, |p| {
        asked.push(p);
        Ok(Samples::U16(vec![p as u16; 20]))
    })
    .unwrap();
    assert_eq!(asked, vec![0, 1, 2]);
    assert_eq!(read(&out).unwrap().samples, Samples::U16([0u16, 1, 2].iter().flat_map(|&v| vec![v; 20]).collect()));
    let bad = d.path().join("bad.tif");
    let e = write_pages(&bad, &l, |p| if p == 1 { Err(Error::Cancelled) } else { Ok(Samples::U16(vec![0; 20])) }).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert!(!bad.exists());
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
}
