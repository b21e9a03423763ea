//! The graph page in a real browser: headless Chromium loads `/graph` with a query, takes a
//! screenshot, and the screenshot must show each series' line in its legend colour.
//!
//! Needs `chromium` on PATH (Debian's package; `.ci/run` installs it). Without it the test
//! says so loudly and passes, except under `CI=true`, where it fails.

mod common;

use std::process::Command;

use common::TestServer;
use tsdb_server::ServerOptions;

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.success() && !path.is_empty()).then_some(path)
        })
}

/// `(r, g, b)` of `#rrggbb`.
fn rgb(hex: &str) -> Option<(u8, u8, u8)> {
    let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
    Some((byte(0)?, byte(2)?, byte(4)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_every_series_of_the_chart() {
    let Some(browser) = chromium() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium is not installed, and CI=true: install it (apt-get install chromium)");
        }
        eprintln!(
            "\n!!!! SKIPPED: `chromium` is not on PATH; install it (apt-get install chromium) to check the graph page in a browser !!!!\n"
        );
        return;
    };
    let server = TestServer::start(ServerOptions::default()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut lines = String::new();
    for i in 0..360 {
        for (h, phase) in [("a", 0.0), ("b", 2.0), ("c", 4.0)] {
            let v = 50.0 + 30.0 * (f64::from(i) / 20.0 + phase).sin();
            lines.push_str(&format!(
                "cpu,host={h} usage={v:.2} {}\n",
                now - 3600 + i64::from(i) * 10
            ));
        }
    }
    let (status, _, body) = server
        .post("/write?precision=s", &[], lines.into_bytes())
        .await;
    assert_eq!(status, 204, "{body}");
    let url = format!("{}/graph?query=cpu_usage&range=1h", server.url);
    let (_, html) = server.get("/graph?query=cpu_usage&range=1h").await;
    let colours: Vec<(u8, u8, u8)> = html
        .match_indices("background:#")
        .filter_map(|(at, m)| rgb(&html[at + m.len()..]))
        .collect();
    assert_eq!(colours.len(), 3, "a legend entry per series: {html}");

    let dir = tempfile::tempdir().expect("temp dir");
    let shot = dir.path().join("graph.png");
    let out = tokio::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--window-size=1100,1000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("chromium finishes in time")
        .expect("chromium runs");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let mut counts = vec![0usize; colours.len()];
    for px in pixels[..info.buffer_size()].chunks_exact(channels) {
        for (i, c) in colours.iter().enumerate() {
            if (px[0], px[1], px[2]) == *c {
                counts[i] += 1;
            }
        }
    }
    eprintln!("pixels of each series' colour in the screenshot: {counts:?}");
    // A legend swatch is under 200 pixels; a line over an hour of data is far more.
    for (i, n) in counts.iter().enumerate() {
        assert!(
            *n > 500,
            "series {i} ({:?}): {n} pixels of its colour",
            colours[i]
        );
    }
    server.stop().await;
}
