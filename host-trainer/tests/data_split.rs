//! Split and label-budget semantics (the seeds' protocol), folder and CSV datasets.
use rsim_train::data::split::{apply_budget, budget_count, round_half_even, split_per_class, Pick};
use rsim_train::data::Dataset;

#[test]
fn rounding_is_pythons_half_to_even() {
    assert_eq!(round_half_even(2.5), 2.0);
    assert_eq!(round_half_even(3.5), 4.0);
    assert_eq!(round_half_even(0.5), 0.0);
    assert_eq!(round_half_even(2.4999), 2.0);
    assert_eq!(round_half_even(2.6), 3.0);
}

#[test]
fn budget_fraction_and_count() {
    // Fractions: max(round(n * b), 1).
    assert_eq!(budget_count(100, 0.2).unwrap(), 20);
    assert_eq!(budget_count(5, 0.5).unwrap(), 2); // 2.5 rounds to even
    assert_eq!(budget_count(7, 0.5).unwrap(), 4); // 3.5 rounds to even
    assert_eq!(budget_count(10, 0.01).unwrap(), 1); // never zero for a non-empty class
    assert_eq!(budget_count(10, 1.0).unwrap(), 10); // 1 is the whole class, not one file
                                                    // Counts: min(floor(b), n).
    assert_eq!(budget_count(100, 5.0).unwrap(), 5);
    assert_eq!(budget_count(3, 20.0).unwrap(), 3); // budget larger than the class
    assert_eq!(budget_count(100, 2.9).unwrap(), 2);
    assert_eq!(budget_count(0, 5.0).unwrap(), 0);
    assert_eq!(budget_count(0, 0.5).unwrap(), 0);
    assert!(budget_count(10, 0.0).is_err());
    assert!(budget_count(10, -3.0).is_err());
    assert!(budget_count(10, f64::NAN).is_err());
}

#[test]
fn budget_takes_first_sorted_per_class() {
    let by_class = vec![vec![10, 11, 12, 13], vec![20, 21], vec![]];
    assert_eq!(apply_budget(&by_class, 3.0, Pick::First).unwrap(), vec![10, 11, 12, 20, 21]);
    assert_eq!(apply_budget(&by_class, 0.5, Pick::First).unwrap(), vec![10, 11, 20]);
}

#[test]
fn random_budget_is_seeded_subset() {
    let by_class: Vec<Vec<usize>> = vec![(0..50).collect(), (100..140).collect()];
    let a = apply_budget(&by_class, 5.0, Pick::Random { seed: 7 }).unwrap();
    let b = apply_budget(&by_class, 5.0, Pick::Random { seed: 7 }).unwrap();
    let c = apply_budget(&by_class, 5.0, Pick::Random { seed: 8 }).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 10);
    assert_eq!(a.iter().filter(|&&i| i < 50).count(), 5);
    let mut d = a.clone();
    d.dedup();
    assert_eq!(d.len(), 10, "no duplicates");
    assert_ne!(&a[..5], &[0, 1, 2, 3, 4], "random differs from first-N");
    // Each class's subset does not depend on the other classes.
    let only0 = apply_budget(&by_class[..1], 5.0, Pick::Random { seed: 7 }).unwrap();
    assert_eq!(&a[..5], &only0[..]);
}

#[test]
fn split_per_class_80_20() {
    let by_class = vec![(0..10).collect::<Vec<_>>(), (10..13).collect(), (13..15).collect(), vec![]];
    let parts = split_per_class(&by_class, &[0.8, 0.2]).unwrap();
    // 10 -> 8/2; 3 -> round(2.4)=2 / 1; 2 -> round(1.6)=2 / 0.
    assert_eq!(parts[0], vec![0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 13, 14]);
    assert_eq!(parts[1], vec![8, 9, 12]);
}

#[test]
fn split_three_way_and_tie() {
    let by_class = vec![(0..5).collect::<Vec<_>>()];
    // 5 * 0.5 = 2.5 -> 2 (half to even), next boundary 5 * 0.7 = 3.5 -> 4, rest.
    let parts = split_per_class(&by_class, &[0.5, 0.2, 0.3]).unwrap();
    assert_eq!(parts, vec![vec![0, 1], vec![2, 3], vec![4]]);
    // Shares that do not sum to 1 leave the rest out.
    let parts = split_per_class(&[(0..10).collect()], &[0.3]).unwrap();
    assert_eq!(parts, vec![vec![0, 1, 2]]);
    assert!(split_per_class(&by_class, &[0.8, 0.8]).is_err());
}

#[test]
fn folder_dataset_is_sorted_like_python() {
    let Some(root) = rsim_test_support::dataset("eurosat-rgb-ci20") else { return };
    let ds = Dataset::from_folder(&root).unwrap();
    assert_eq!(ds.classes.len(), 10);
    assert_eq!(ds.classes[0], "AnnualCrop");
    assert_eq!(ds.classes[9], "SeaLake");
    assert_eq!(ds.len(), 200);
    let by = ds.by_class();
    let names: Vec<String> =
        by[0].iter().take(4).map(|&i| ds.samples[i].path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    // Python's sorted(): "AnnualCrop_1.jpg" < "AnnualCrop_10.jpg" < ... < "AnnualCrop_2.jpg".
    assert_eq!(names, ["AnnualCrop_1.jpg", "AnnualCrop_10.jpg", "AnnualCrop_11.jpg", "AnnualCrop_12.jpg"]);
    let parts = split_per_class(&by, &[0.8, 0.2]).unwrap();
    assert_eq!(parts[0].len(), 160);
    assert_eq!(parts[1].len(), 40);
    let train = ds.subset(&parts[0]);
    let five = apply_budget(&train.by_class(), 5.0, Pick::First).unwrap();
    assert_eq!(five.len(), 50);
}

#[test]
fn eurosat_csv_split_reads_header_columns() {
    let Some(csv) = rsim_test_support::require(
        rsim_test_support::datasets_dir().join("eurosat-rgb/train.csv"),
        "EuroSAT RGB split CSV",
    ) else {
        return;
    };
    let ds = Dataset::from_csv(&csv, None).unwrap();
    assert_eq!(ds.len(), 18_900);
    assert_eq!(ds.classes.len(), 10);
    assert_eq!(ds.classes[7], "Residential");
    // The label column agrees with the folder the file sits in.
    for s in ds.samples.iter().take(500) {
        let folder = s.path.parent().unwrap().file_name().unwrap().to_string_lossy();
        assert_eq!(folder, ds.classes[s.label as usize]);
        assert!(s.path.exists(), "{}", s.path.display());
    }
}

#[test]
fn csv_without_label_column_uses_sorted_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("list.csv");
    std::fs::write(&csv, "path,class\nb/x.png,b\na/y.png,a\nb/z.png,b\n").unwrap();
    let ds = Dataset::from_csv(&csv, None).unwrap();
    assert_eq!(ds.classes, vec!["a", "b"]);
    assert_eq!(ds.samples.iter().map(|s| s.label).collect::<Vec<_>>(), vec![1, 0, 1]);
    std::fs::write(&csv, "name,label\nx.png,0\n").unwrap();
    let err = Dataset::from_csv(&csv, None).unwrap_err().to_string();
    assert!(err.contains("no path column"), "{err}");
}
