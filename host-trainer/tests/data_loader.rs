//! The loader: determinism across worker counts, exact resume, epochs, views, odd and corrupt
//! files, multi-band GeoTIFF.
use rsim_train::augment::{OtConfig, Pipeline, ViewAug};
use rsim_train::data::decode::decode_file;
use rsim_train::data::loader::{check_files, probe_bands};
use rsim_train::data::{Dataset, Loader, LoaderConfig, Scaling, TileData};
use std::path::Path;

fn ci20() -> Option<Dataset> {
    let root = rsim_test_support::dataset("eurosat-rgb-ci20")?;
    Some(Dataset::from_folder(&root).unwrap())
}

fn cfg(workers: usize) -> LoaderConfig {
    LoaderConfig { batch_size: 16, workers, prefetch: 3, seed: 42, ..LoaderConfig::default() }
}

fn two_view() -> Pipeline {
    Pipeline {
        views: vec![ViewAug::simclr(32), ViewAug::simclr(32)],
        ot: Some(OtConfig { p: 0.5, samples: 300, view: 1 }),
    }
}

#[test]
fn same_batches_for_any_worker_count() {
    let Some(ds) = ci20() else { return };
    let collect = |workers| {
        let mut l = Loader::new(&ds, two_view(), cfg(workers)).unwrap();
        l.epoch().map(|b| b.unwrap()).collect::<Vec<_>>()
    };
    let a = collect(0);
    let b = collect(1);
    let c = collect(3);
    assert_eq!(a.len(), 200 / 16);
    assert_eq!(a, b);
    assert_eq!(a, c);
    let bt = &a[0];
    assert_eq!(bt.views.len(), 2);
    assert_eq!(bt.view_shapes[0], [16, 3, 32, 32]);
    assert_eq!(bt.views[0].len(), 16 * 3 * 32 * 32);
    assert_ne!(bt.views[0], bt.views[1], "two views differ");
    assert!(bt.labels.iter().all(|&l| (0..10).contains(&l)));
}

#[test]
fn epochs_shuffle_differently_and_cover_the_data() {
    let Some(ds) = ci20() else { return };
    let mut l =
        Loader::new(&ds, Pipeline::single(ViewAug::eval(16)), LoaderConfig { drop_last: false, ..cfg(2) }).unwrap();
    let mut seen = Vec::new();
    for b in l.epoch() {
        seen.extend(b.unwrap().indices);
    }
    assert_eq!(l.state().epoch, 1);
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..200).collect::<Vec<_>>(), "drop_last=false visits every sample once");
    let e1: Vec<usize> = l.epoch().flat_map(|b| b.unwrap().indices).collect();
    assert_ne!(seen, e1, "a new order each epoch");
    assert_eq!(l.epoch_order(0), seen);
    // drop_last keeps only full batches.
    let l2 = Loader::new(&ds, Pipeline::single(ViewAug::eval(16)), cfg(0)).unwrap();
    assert_eq!(l2.batches_per_epoch(), 12);
}

#[test]
fn resume_from_saved_state_continues_exactly() {
    let Some(ds) = ci20() else { return };
    let mut full = Loader::new(&ds, two_view(), cfg(2)).unwrap();
    let mut all = Vec::new();
    for _ in 0..2 {
        all.extend(full.epoch().map(|b| b.unwrap()));
    }
    // Stop after 5 batches; save the state as JSON as a checkpoint would.
    let mut first = Loader::new(&ds, two_view(), cfg(3)).unwrap();
    let mut it = first.epoch();
    let mut last = None;
    for _ in 0..5 {
        last = Some(it.next().unwrap().unwrap());
    }
    drop(it);
    let saved = serde_json::to_string(&last.unwrap().next_state).unwrap();
    assert_eq!(first.state(), serde_json::from_str(&saved).unwrap());
    let mut resumed = Loader::new(&ds, two_view(), cfg(1)).unwrap();
    resumed.set_state(serde_json::from_str(&saved).unwrap()).unwrap();
    let mut rest = Vec::new();
    while rest.len() < all.len() - 5 {
        rest.extend(resumed.epoch().map(|b| b.unwrap()));
    }
    assert_eq!(&all[5..], &rest[..]);
    // A different seed in the checkpoint is refused.
    let mut other = Loader::new(&ds, two_view(), LoaderConfig { seed: 1, ..cfg(0) }).unwrap();
    assert!(other.set_state(serde_json::from_str(&saved).unwrap()).is_err());
}

#[test]
fn cache_does_not_change_batches() {
    let Some(ds) = ci20() else { return };
    let mut a = Loader::new(&ds, two_view(), cfg(2)).unwrap();
    let mut b = Loader::new(&ds, two_view(), LoaderConfig { cache: true, ..cfg(2) }).unwrap();
    let x: Vec<_> = a.epoch().map(|b| b.unwrap()).collect();
    let y: Vec<_> = b.epoch().map(|b| b.unwrap()).collect();
    let y2: Vec<_> = b.epoch().map(|b| b.unwrap()).collect();
    assert_eq!(x, y);
    assert_ne!(y, y2);
}

/// A 5-band u16 TIFF colour type (the encoder has no built-in multi-band type).
struct Bands5;
impl tiff::encoder::colortype::ColorType for Bands5 {
    type Inner = u16;
    const TIFF_VALUE: tiff::tags::PhotometricInterpretation = tiff::tags::PhotometricInterpretation::BlackIsZero;
    const BITS_PER_SAMPLE: &'static [u16] = &[16; 5];
    const SAMPLE_FORMAT: &'static [tiff::tags::SampleFormat] = &[tiff::tags::SampleFormat::Uint; 5];
    fn horizontal_predict(row: &[u16], result: &mut Vec<u16>) {
        result.extend_from_slice(row);
    }
}

fn write_fixtures(root: &Path) {
    let a = root.join("a");
    let b = root.join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    image::GrayImage::from_fn(20, 30, |x, y| image::Luma([(x * 7 + y) as u8])).save(a.join("gray.png")).unwrap();
    image::RgbaImage::from_fn(33, 17, |x, _| image::Rgba([x as u8 * 5, 10, 200, 0])).save(a.join("rgba.png")).unwrap();
    image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(8, 8, |_, _| image::Rgb([65535u16, 32768, 0]))
        .save(b.join("deep16.png"))
        .unwrap();
    image::RgbImage::from_fn(64, 64, |_, _| image::Rgb([1, 2, 3])).save(b.join("plain.jpg")).unwrap();
    std::fs::write(b.join("broken.jpg"), b"\xff\xd8\xff this is not a jpeg").unwrap();
}

#[test]
fn odd_files_are_converted_and_bad_ones_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_fixtures(dir.path());
    let ds = Dataset::from_folder(dir.path()).unwrap();
    assert_eq!(ds.len(), 5);
    let g = decode_file(&dir.path().join("a/gray.png")).unwrap();
    assert_eq!((g.height, g.width, g.bands), (30, 20, 1));
    let rgba = decode_file(&dir.path().join("a/rgba.png")).unwrap();
    assert_eq!(rgba.bands, 3, "alpha dropped, not composited");
    if let TileData::U8(v) = &rgba.data {
        assert_eq!(&v[3..6], &[5, 10, 200], "colour kept even where alpha is 0");
    } else {
        panic!("8-bit PNG decodes to u8");
    }
    let deep = decode_file(&dir.path().join("b/deep16.png")).unwrap();
    let img = deep.to_img(3, Scaling::default()).unwrap();
    assert_eq!(&img.data[..3], &[1.0, 32768.0 / 65535.0, 0.0]);
    let gi = g.to_img(3, Scaling::default()).unwrap();
    assert_eq!(gi.data[0], gi.data[1], "gray replicated to RGB");

    // Non-strict: the bad file is reported once, replaced, and counted.
    let (clean, bad) = check_files(&ds, 2, false).unwrap();
    assert_eq!(clean.len(), 4);
    assert_eq!(bad.len(), 1);
    assert!(bad[0].0.ends_with("broken.jpg"));
    assert!(check_files(&ds, 2, true).unwrap_err().to_string().contains("broken.jpg"));
    let lc = LoaderConfig { batch_size: 5, shuffle: false, workers: 2, ..LoaderConfig::default() };
    let mut l = Loader::new(&ds, Pipeline::single(ViewAug::eval(24)), lc.clone()).unwrap();
    let batch = l.epoch().next().unwrap().unwrap();
    assert_eq!(batch.labels.len(), 5, "batch keeps its size");
    assert_eq!(batch.view_shapes[0], [5, 3, 24, 24], "odd sizes resized");
    assert_eq!(l.errors().len(), 1);
    assert!(l.errors()[0].0.ends_with("broken.jpg"));
    // Strict: the run stops with the path in the message.
    let mut s = Loader::new(&ds, Pipeline::single(ViewAug::eval(24)), LoaderConfig { strict: true, ..lc }).unwrap();
    let err = s.epoch().next().unwrap().unwrap_err().to_string();
    assert!(err.contains("broken.jpg"), "{err}");
}

#[test]
fn multiband_geotiff_reports_its_bands() {
    let dir = tempfile::tempdir().unwrap();
    let cls = dir.path().join("water");
    std::fs::create_dir_all(&cls).unwrap();
    let (w, h) = (6u32, 4u32);
    let data: Vec<u16> = (0..w * h * 5).map(|i| (i * 100) as u16).collect();
    for name in ["t1.tif", "t2.tif"] {
        let f = std::fs::File::create(cls.join(name)).unwrap();
        let mut enc = tiff::encoder::TiffEncoder::new(f).unwrap();
        enc.write_image::<Bands5>(w, h, &data).unwrap();
    }
    // A float32 single-band TIFF decodes too.
    let f = std::fs::File::create(dir.path().join("f.tif")).unwrap();
    tiff::encoder::TiffEncoder::new(f)
        .unwrap()
        .write_image::<tiff::encoder::colortype::Gray32Float>(3, 2, &[0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
        .unwrap();
    let ft = decode_file(&dir.path().join("f.tif")).unwrap();
    assert_eq!(ft.data, TileData::F32(vec![0.0, 0.5, 1.0, 2.0, 3.0, 4.0]));

    let ds = Dataset::from_folder(dir.path()).unwrap();
    assert_eq!(probe_bands(&ds).unwrap(), 5);
    let t = decode_file(&ds.samples[0].path).unwrap();
    assert_eq!((t.height, t.width, t.bands), (4, 6, 5));
    assert_eq!(t.data, TileData::U16(data.clone()));
    let scaling = Scaling { u16_max: 10000.0, f32_max: 1.0 };
    let mut view = ViewAug::eval(6);
    view.mean = vec![0.0; 5];
    view.std = vec![1.0; 5];
    let lc = LoaderConfig { batch_size: 2, bands: 5, scaling, shuffle: false, workers: 0, ..LoaderConfig::default() };
    let mut l = Loader::new(&ds, Pipeline::single(view), lc).unwrap();
    let b = l.epoch().next().unwrap().unwrap();
    assert_eq!(b.view_shapes[0], [2, 5, 6, 6]);
    // Band 2 of pixel (0, 0) is raw value 200 -> 0.02 after scaling; CHW layout puts band 2 at 2*36.
    assert!((b.views[0][2 * 36] - 0.02).abs() < 1e-6);
    // An RGB loader refuses a 5-band tile? No: extra bands are cut to the first three.
    let rgb = t.to_img(3, scaling).unwrap();
    assert_eq!(rgb.c, 3);
    assert!(t.to_img(7, scaling).is_err(), "fewer bands than the model needs is an error");
}

#[test]
fn bad_configs_are_refused_with_reasons() {
    let Some(ds) = ci20() else { return };
    let e = |c: LoaderConfig| {
        Loader::new(&ds, Pipeline::single(ViewAug::eval(8)), c).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(e(LoaderConfig { batch_size: 0, ..cfg(0) }).contains("batch size"));
    assert!(e(LoaderConfig { batch_size: 500, ..cfg(0) }).contains("drop_last"));
    assert!(Loader::new(&ds, Pipeline { views: vec![], ot: None }, cfg(0)).is_err());
}
