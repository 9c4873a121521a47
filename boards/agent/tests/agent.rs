//! The agent binary end to end: a directory of PNGs → CSV; a GeoTIFF scene → CSV + GeoJSON in map
//! coordinates; telemetry over TCP decodes to the same rows as the CSV.

use rsim_boards::wire::{FrameReader, Msg};
use std::io::Read;
use std::net::TcpListener;
use std::process::Command;

fn scene(w: u32, h: u32) -> Vec<u8> {
    (0..w * h * 3).map(|i| ((i / 3 % w) * 255 / w) as u8 ^ ((i / 3 / w) * 7) as u8).collect()
}

#[test]
fn directory_of_images_to_csv_and_telemetry_over_tcp() {
    let dir = std::env::temp_dir().join(format!("rsim-agent-{}", std::process::id()));
    let imgs = dir.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    std::fs::write(dir.join("m.rsm"), rsim_boards::demo::tiny_f32_model(0)).unwrap();
    for i in 0..3 {
        image::save_buffer(imgs.join(format!("t{i}.png")), &scene(64, 32), 64, 32, image::ExtendedColorType::Rgb8)
            .unwrap();
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let ground = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let out = Command::new(env!("CARGO_BIN_EXE_rsim-agent"))
        .args(["--model", dir.join("m.rsm").to_str().unwrap(), "--input", imgs.to_str().unwrap(), "--tile", "32"])
        .args(["--csv", dir.join("r.csv").to_str().unwrap(), "--tcp", &addr])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(dir.join("r.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 6, "3 images x 2 tiles of 32x32:\n{csv}");
    assert!(rows[1].contains("t0.png,1,1,32,0,32,"), "{}", rows[1]);
    // The ground receives the same tiles over TCP.
    let bytes = ground.join().unwrap();
    let mut r: FrameReader = FrameReader::new();
    let mut tel = Vec::new();
    for &b in &bytes {
        if let Some(Ok(Msg::Telemetry(t))) = r.push(b) {
            tel.push(t);
        }
    }
    assert_eq!(tel.len(), 6);
    for (t, row) in tel.iter().zip(&rows) {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f[6], t.top[0].class.to_string());
        assert_eq!(f[8], format!("{:.6}", t.top[0].confidence));
    }
}

#[test]
fn geotiff_scene_gets_geojson_in_map_coordinates() {
    let dir = std::env::temp_dir().join(format!("rsim-agent-geo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("m.rsm"), rsim_boards::demo::tiny_f32_model(0)).unwrap();
    let tif = dir.join("scene.tif");
    {
        use tiff::encoder::{colortype, TiffEncoder};
        use tiff::tags::Tag;
        let f = std::fs::File::create(&tif).unwrap();
        let mut enc = TiffEncoder::new(f).unwrap();
        let mut img = enc.new_image::<colortype::RGB8>(64, 64).unwrap();
        // Tiepoint: pixel (0, 0) at (500000, 4200000); 10 m pixels (a UTM-like grid).
        img.encoder().write_tag(Tag::Unknown(33922), &[0.0f64, 0.0, 0.0, 500_000.0, 4_200_000.0, 0.0][..]).unwrap();
        img.encoder().write_tag(Tag::Unknown(33550), &[10.0f64, 10.0, 0.0][..]).unwrap();
        img.write_data(&scene(64, 64)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rsim-agent"))
        .args(["--model", dir.join("m.rsm").to_str().unwrap(), "--input", tif.to_str().unwrap(), "--tile", "32"])
        .args(["--csv", dir.join("r.csv").to_str().unwrap(), "--geojson", dir.join("r.geojson").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gj = std::fs::read_to_string(dir.join("r.geojson")).unwrap();
    assert_eq!(gj.matches("\"type\":\"Feature\"").count(), 4);
    // Tile (32, 32) spans x 500320..500640 and y 4199680..4199360 (y grows north).
    assert!(
        gj.contains("[[[500320,4199680],[500640,4199680],[500640,4199360],[500320,4199360],[500320,4199680]]]"),
        "{gj}"
    );
}

#[test]
fn image_and_arena_sizes_are_capped_before_allocating() {
    let dir = std::env::temp_dir().join(format!("rsim-agent-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("m.rsm"), rsim_boards::demo::tiny_f32_model(0)).unwrap();
    let png = dir.join("big.png");
    image::save_buffer(&png, &scene(64, 32), 64, 32, image::ExtendedColorType::Rgb8).unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rsim-agent"))
            .args(["--model", dir.join("m.rsm").to_str().unwrap(), "--input", png.to_str().unwrap(), "--tile", "32"])
            .args(["--csv", dir.join("r.csv").to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--max-pixels", "2047"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("64x32 = 2048 pixels, over --max-pixels 2047"), "{err}");
    let out = run(&["--max-arena", "16"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("arena, over --max-arena 16"), "{err}");
    let out = run(&["--max-macs", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("over the budget of 1"), "{err}");
    // Exactly at the caps it runs.
    let out = run(&["--max-pixels", "2048"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
