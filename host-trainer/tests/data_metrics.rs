//! Metrics against hand computations, and the PNG plots.
use rsim_train::metrics::Confusion;
use rsim_train::plots::{plot_confusion, plot_loss_curve, Canvas};

#[test]
fn scores_match_hand_computation() {
    // truth:  0 0 0 0 1 1 1 2 2 2
    // pred:   0 0 1 2 1 1 0 2 2 2
    let truth = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
    let pred = [0, 0, 1, 2, 1, 1, 0, 2, 2, 2];
    let m = Confusion::from_labels(3, &truth, &pred).unwrap();
    // Rows (truth): [2,1,1], [1,2,0], [0,0,3].
    assert_eq!(m.counts, vec![2, 1, 1, 1, 2, 0, 0, 0, 3]);
    let s = m.scores();
    // OA = 7/10.
    assert!((s.oa - 0.7).abs() < 1e-12);
    // Per class: 2/4, 2/3, 3/3; AA = (0.5 + 0.6667 + 1) / 3.
    assert!((s.per_class[0] - 0.5).abs() < 1e-12);
    assert!((s.per_class[1] - 2.0 / 3.0).abs() < 1e-12);
    assert!((s.per_class[2] - 1.0).abs() < 1e-12);
    assert!((s.aa - (0.5 + 2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-12);
    // Row sums 4,3,3; column sums 3,3,4; pe = (4*3 + 3*3 + 3*4) / 100 = 0.33;
    // kappa = (0.7 - 0.33) / 0.67.
    assert!((s.kappa - 0.37 / 0.67).abs() < 1e-12);
    assert_eq!(s.total, 10);
}

#[test]
fn kappa_edge_cases() {
    let perfect = Confusion::from_labels(2, &[0, 1, 1], &[0, 1, 1]).unwrap().scores();
    assert_eq!((perfect.oa, perfect.kappa), (1.0, 1.0));
    // Always predicting the majority class: chance-level agreement, kappa 0.
    let major = Confusion::from_labels(2, &[0, 0, 0, 1], &[0, 0, 0, 0]).unwrap().scores();
    assert!((major.oa - 0.75).abs() < 1e-12);
    assert!(major.kappa.abs() < 1e-12);
    // A class with no samples is left out of AA and reported as NaN.
    let m = Confusion::from_labels(3, &[0, 1], &[0, 0]).unwrap().scores();
    assert!(m.per_class[2].is_nan());
    assert!((m.aa - 0.5).abs() < 1e-12);
    assert!(Confusion::from_labels(2, &[0, 5], &[0, 1]).is_err());
    assert!(Confusion::from_labels(2, &[0], &[0, 1]).is_err());
}

#[test]
fn text_renders_without_system_fonts() {
    let mut c = Canvas::new(40, 12);
    let w = c.text(2, 2, "A1", 1, (0, 0, 0));
    assert_eq!(w, 16);
    let dark = c.buf.chunks(3).filter(|p| p[0] == 0).count();
    // Glyph bits of 'A' and '1' in the embedded 8x8 font.
    use font8x8::UnicodeFonts;
    let bits: u32 = ['A', '1']
        .iter()
        .map(|&ch| font8x8::BASIC_FONTS.get(ch).unwrap().iter().map(|r| r.count_ones()).sum::<u32>())
        .sum();
    assert!(bits > 10);
    assert_eq!(dark as u32, bits);
    let mut big = Canvas::new(40, 40);
    big.text(0, 0, "A", 3, (0, 0, 0));
    assert_eq!(
        big.buf.chunks(3).filter(|p| p[0] == 0).count() as u32,
        9 * font8x8::BASIC_FONTS.get('A').unwrap().iter().map(|r| r.count_ones()).sum::<u32>()
    );
}

#[test]
fn loss_curve_and_confusion_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("metrics.jsonl");
    let mut lines = String::new();
    for step in 0..50 {
        lines += &format!("{{\"step\": {step}, \"loss\": {}, \"lr\": 0.1}}\n", 5.0 / (1.0 + step as f64));
    }
    lines += "not json\n{\"step\": 60}\n";
    std::fs::write(&jsonl, lines).unwrap();
    let png = dir.path().join("loss.png");
    let counts = plot_loss_curve(&jsonl, &png, &[], "SimCLR loss").unwrap();
    assert_eq!(counts, vec![50]);
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 500));
    // The curve is drawn in the first series colour.
    assert!(img.pixels().filter(|p| p.0 == [31, 119, 180]).count() > 100);
    // The title is written in the top band.
    assert!(
        (0..800)
            .flat_map(|x| (8..32).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0 == [20, 20, 20])
            .count()
            > 50
    );
    assert!(plot_loss_curve(&jsonl, &png, &["missing"], "x").is_err());

    let m = Confusion::from_labels(3, &[0, 0, 1, 2], &[0, 1, 1, 2]).unwrap();
    let names = vec!["Forest".to_string(), "River".to_string(), "SeaLake".to_string()];
    let cm = dir.path().join("cm.png");
    plot_confusion(&m, &names, &cm, "confusion").unwrap();
    let img = image::open(&cm).unwrap().to_rgb8();
    // A full-rate cell is the darkest blue.
    assert!(img.pixels().any(|p| p.0 == [8, 48, 107]));
    assert!(img.pixels().filter(|p| p.0 == [20, 20, 20]).count() > 200, "labels drawn");
}
