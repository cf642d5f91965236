//! Unit tests of the render log parser, against the captured logs in `tests/data/render-logs/`.

use super::*;

macro_rules! render_log {
    ($name:literal) => {
        include_str!(concat!("../../../tests/data/render-logs/", $name))
    };
}

const ALL_LOGS: [(&str, &str); 26] = [
    ("3.4-cannot-save.log", render_log!("3.4-cannot-save.log")),
    ("3.4-cycles-cli.log", render_log!("3.4-cycles-cli.log")),
    ("3.4-cycles.log", render_log!("3.4-cycles.log")),
    ("3.4-eevee.log", render_log!("3.4-eevee.log")),
    ("3.4-no-camera.log", render_log!("3.4-no-camera.log")),
    (
        "3.4-permission-denied.log",
        render_log!("3.4-permission-denied.log"),
    ),
    (
        "3.4-skip-existing.log",
        render_log!("3.4-skip-existing.log"),
    ),
    ("3.4-workbench.log", render_log!("3.4-workbench.log")),
    ("4.5-cannot-save.log", render_log!("4.5-cannot-save.log")),
    ("4.5-cycles.log", render_log!("4.5-cycles.log")),
    ("4.5-eevee.log", render_log!("4.5-eevee.log")),
    ("4.5-no-camera.log", render_log!("4.5-no-camera.log")),
    (
        "4.5-permission-denied.log",
        render_log!("4.5-permission-denied.log"),
    ),
    (
        "4.5-skip-existing.log",
        render_log!("4.5-skip-existing.log"),
    ),
    ("4.5-workbench.log", render_log!("4.5-workbench.log")),
    ("4.5-wrong-engine.log", render_log!("4.5-wrong-engine.log")),
    (
        "5.0-cannot-save-log-render.log",
        render_log!("5.0-cannot-save-log-render.log"),
    ),
    ("5.0-cannot-save.log", render_log!("5.0-cannot-save.log")),
    (
        "5.0-cycles-log-render.log",
        render_log!("5.0-cycles-log-render.log"),
    ),
    ("5.0-cycles.log", render_log!("5.0-cycles.log")),
    (
        "5.0-eevee-log-render.log",
        render_log!("5.0-eevee-log-render.log"),
    ),
    ("5.0-eevee.log", render_log!("5.0-eevee.log")),
    ("5.0-no-camera.log", render_log!("5.0-no-camera.log")),
    (
        "5.0-permission-denied.log",
        render_log!("5.0-permission-denied.log"),
    ),
    (
        "5.0-skip-existing-log-render.log",
        render_log!("5.0-skip-existing-log-render.log"),
    ),
    ("5.0-workbench.log", render_log!("5.0-workbench.log")),
];

fn parse_log(log: &str) -> Vec<LogLine> {
    let mut splitter = LineSplitter::new();
    let mut lines = splitter.push(log.as_bytes());
    lines.extend(splitter.finish());
    lines.iter().filter_map(|line| parse_line(line)).collect()
}

fn saved(lines: &[LogLine]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|line| match line {
            LogLine::Saved { path } => Some(path.as_str()),
            _ => None,
        })
        .collect()
}

fn frame_times(lines: &[LogLine]) -> Vec<(f64, Option<f64>)> {
    lines
        .iter()
        .filter_map(|line| match line {
            LogLine::FrameTime {
                seconds,
                saving_seconds,
            } => Some((*seconds, *saving_seconds)),
            _ => None,
        })
        .collect()
}

fn progress(lines: &[LogLine]) -> Vec<&Progress> {
    lines
        .iter()
        .filter_map(|line| match line {
            LogLine::Progress(progress) => Some(progress),
            _ => None,
        })
        .collect()
}

fn errors(lines: &[LogLine]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|line| match line {
            LogLine::Error { message } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

fn warnings(lines: &[LogLine]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|line| match line {
            LogLine::Warning { message } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

/// The highest sample count reached per frame.
fn samples_reached(lines: &[LogLine]) -> Vec<(i64, (u32, u32))> {
    let mut reached: Vec<(i64, (u32, u32))> = Vec::new();
    for progress in progress(lines) {
        let (Some(frame), Some(samples)) = (progress.frame, progress.samples) else {
            continue;
        };
        match reached.iter_mut().find(|(seen, _)| *seen == frame) {
            Some((_, best)) if samples.0 > best.0 => *best = samples,
            Some(_) => {}
            None => reached.push((frame, samples)),
        }
    }
    reached
}

#[test]
fn cycles_3_4_saves_each_frame_with_its_time_and_reaches_all_samples() {
    let lines = parse_log(render_log!("3.4-cycles.log"));
    assert_eq!(
        saved(&lines),
        [
            "/tmp/rpb-logs/out/3.4-cycles/frame_0001.png",
            "/tmp/rpb-logs/out/3.4-cycles/frame_0002.png",
        ]
    );
    assert_eq!(frame_times(&lines), [(0.21, Some(0.14)), (0.0, Some(0.0))]);
    assert_eq!(samples_reached(&lines), [(1, (4, 4)), (2, (4, 4))]);
    assert!(errors(&lines).is_empty() && warnings(&lines).is_empty());

    // Each Saved follows its frame's `Finished` status and precedes its FrameTime.
    let order: Vec<&str> = lines
        .iter()
        .filter_map(|line| match line {
            LogLine::Progress(p) if p.status == "Finished" => Some("finished"),
            LogLine::Saved { .. } => Some("saved"),
            LogLine::FrameTime { .. } => Some("time"),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["finished", "saved", "time", "finished", "saved", "time"]
    );
}

#[test]
fn cycles_3_4_status_lines_have_their_fields() {
    let lines = parse_log(render_log!("3.4-cycles.log"));
    let all = progress(&lines);
    assert!(
        all.iter()
            .all(|p| p.scene.as_deref() == Some("Scene, ViewLayer"))
    );
    let bvh = all
        .iter()
        .find(|p| p.status == "Building BVH 0%")
        .expect("a BVH status line");
    assert_eq!(bvh.stage.as_deref(), Some("Updating Scene BVH"));
    assert_eq!(bvh.frame, Some(1));
    let first_sample = all
        .iter()
        .find(|p| p.status == "Sample 1/4")
        .expect("a first sample line");
    assert_eq!(first_sample.remaining_seconds, Some(0.0));
    assert_eq!(first_sample.elapsed_seconds, Some(0.06));
    assert_eq!(first_sample.samples, Some((1, 4)));
    let synchronizing = all
        .iter()
        .find(|p| p.status == "Cube")
        .expect("a sync line");
    assert_eq!(synchronizing.stage.as_deref(), Some("Synchronizing object"));
}

#[test]
fn cycles_cli_3_4_saves_the_hash_pattern_paths() {
    let lines = parse_log(render_log!("3.4-cycles-cli.log"));
    assert_eq!(
        saved(&lines),
        [
            "/tmp/rpb-logs/out/3.4-cycles-cli/f_0001.png",
            "/tmp/rpb-logs/out/3.4-cycles-cli/f_0002.png",
        ]
    );
    assert_eq!(frame_times(&lines).len(), 2);
    assert_eq!(samples_reached(&lines), [(1, (4, 4)), (2, (4, 4))]);
}

#[test]
fn eevee_samples_are_read_from_rendering_lines() {
    for (log, frames) in [
        (render_log!("3.4-eevee.log"), "3.4-eevee"),
        (render_log!("4.5-eevee.log"), "4.5-eevee"),
    ] {
        let lines = parse_log(log);
        assert_eq!(
            samples_reached(&lines),
            [(1, (4, 4)), (2, (4, 4))],
            "{frames}"
        );
        assert_eq!(
            saved(&lines),
            [
                format!("/tmp/rpb-logs/out/{frames}/frame_0001.png"),
                format!("/tmp/rpb-logs/out/{frames}/frame_0002.png"),
            ]
        );
        assert!(errors(&lines).is_empty(), "{frames}: {:?}", errors(&lines));
        assert!(warnings(&lines).iter().all(|w| w.starts_with("EGL Error")));
    }
    let eevee = parse_log(render_log!("3.4-eevee.log"));
    let syncing = progress(&eevee);
    assert_eq!(syncing[0].status, "Syncing Cube");
    assert_eq!(syncing[0].elapsed_seconds, Some(0.35));
    assert_eq!(syncing[0].scene, None);
    assert_eq!(frame_times(&eevee), [(4.31, Some(0.16)), (2.14, Some(0.0))]);
}

#[test]
fn workbench_prints_only_saved_and_times() {
    for (log, name) in [
        (render_log!("3.4-workbench.log"), "3.4-workbench"),
        (render_log!("4.5-workbench.log"), "4.5-workbench"),
    ] {
        let lines = parse_log(log);
        assert!(progress(&lines).is_empty());
        assert_eq!(saved(&lines).len(), 2, "{name}");
        assert_eq!(frame_times(&lines).len(), 2, "{name}");
    }
}

#[test]
fn cycles_4_5_time_line_has_no_leading_space() {
    let lines = parse_log(render_log!("4.5-cycles.log"));
    assert_eq!(frame_times(&lines), [(0.12, Some(0.11)), (0.01, Some(0.0))]);
    assert_eq!(
        saved(&lines),
        [
            "/tmp/rpb-logs/out/4.5-cycles/frame_0001.png",
            "/tmp/rpb-logs/out/4.5-cycles/frame_0002.png",
        ]
    );
    assert_eq!(samples_reached(&lines), [(1, (4, 4)), (2, (4, 4))]);
}

#[test]
fn blender_5_0_default_output_has_only_saved_lines() {
    for (log, name) in [
        (render_log!("5.0-cycles.log"), "5.0-cycles"),
        (render_log!("5.0-eevee.log"), "5.0-eevee"),
        (render_log!("5.0-workbench.log"), "5.0-workbench"),
    ] {
        let lines = parse_log(log);
        assert_eq!(
            saved(&lines),
            [
                format!("/tmp/rpb-logs/out/{name}/frame_0001.png"),
                format!("/tmp/rpb-logs/out/{name}/frame_0002.png"),
            ]
        );
        assert!(progress(&lines).is_empty() && frame_times(&lines).is_empty());
        assert!(errors(&lines).is_empty());
    }
}

#[test]
fn blender_5_0_with_log_render_has_progress_and_times() {
    let lines = parse_log(render_log!("5.0-cycles-log-render.log"));
    assert_eq!(
        saved(&lines),
        [
            "/tmp/rpb-logs/out/5.0-cycles-log-render/frame_0001.png",
            "/tmp/rpb-logs/out/5.0-cycles-log-render/frame_0002.png",
        ]
    );
    assert_eq!(frame_times(&lines), [(0.12, Some(0.11)), (0.01, Some(0.0))]);
    assert_eq!(samples_reached(&lines), [(1, (4, 4)), (2, (4, 4))]);
    let all = progress(&lines);
    assert!(
        all.iter()
            .all(|p| p.elapsed_seconds.is_none() && p.scene.is_none())
    );
    let first_sample = all
        .iter()
        .find(|p| p.status == "Sample 1/4")
        .expect("sample 1");
    assert_eq!(first_sample.remaining_seconds, Some(0.0));
    assert_eq!(first_sample.frame, Some(1));
    let eevee = parse_log(render_log!("5.0-eevee-log-render.log"));
    assert_eq!(samples_reached(&eevee), [(1, (4, 4)), (2, (4, 4))]);
    assert_eq!(frame_times(&eevee), [(4.38, Some(0.09)), (3.12, Some(0.0))]);
}

#[test]
fn cannot_save_gives_blenders_error_with_the_path_in_every_version() {
    let cases = [
        (
            render_log!("3.4-cannot-save.log"),
            "Render error (Not a directory) cannot save: '/tmp/rpb-logs/notadir/frame_0002.png'",
        ),
        (
            render_log!("4.5-cannot-save.log"),
            "Render error (Not a directory) cannot save: '/tmp/rpb-logs/notadir/frame_0002.png'",
        ),
        (
            render_log!("5.0-cannot-save.log"),
            "Render error (File exists) cannot save: '/tmp/rpb-logs/notadir/frame_0002.png'",
        ),
        (
            render_log!("3.4-permission-denied.log"),
            "Render error (Permission denied) cannot save: '/sys/frame_0002.png'",
        ),
        (
            render_log!("4.5-permission-denied.log"),
            "Render error (Permission denied) cannot save: '/sys/frame_0002.png'",
        ),
        (
            render_log!("5.0-permission-denied.log"),
            "Render error (Success) cannot save: '/sys/frame_0002.png'",
        ),
    ];
    for (log, expected) in cases {
        let lines = parse_log(log);
        assert!(saved(&lines).is_empty(), "{expected}");
        let reported = errors(&lines);
        assert!(reported.contains(&expected), "{expected}: {reported:#?}");
        // The traceback's last line of the raised RuntimeError, in stderr.
        let raised = format!("RuntimeError: Error: {expected}");
        assert!(reported.contains(&raised.as_str()), "{raised}");
    }
}

#[test]
fn cannot_save_reports_the_real_cause_before_the_stale_errno() {
    // The first failure of a run says "Invalid argument"; the line before it says why.
    let lines = parse_log(render_log!("3.4-cannot-save.log"));
    let reported = errors(&lines);
    let real = reported
        .iter()
        .position(|e| *e == "/tmp/rpb-logs/notadir/frame_0001.png: Not a directory")
        .expect("the C library's reason");
    let stale = reported
        .iter()
        .position(|e| e.starts_with("Render error (Invalid argument) cannot save"))
        .expect("Blender's report");
    assert!(real < stale);
    assert!(reported.contains(
        &"imb_savepng: Cannot open file for writing: '/tmp/rpb-logs/notadir/frame_0001.png'"
    ));
    // A failed save still ends with the frame's time (4.5: without the saving part).
    assert_eq!(frame_times(&lines).len(), 2);
    let lines = parse_log(render_log!("4.5-permission-denied.log"));
    assert!(errors(&lines).contains(&"/sys/frame_0001.png: Permission denied"));
    assert!(
        frame_times(&lines)
            .iter()
            .all(|(_, saving)| saving.is_none())
    );
    let lines = parse_log(render_log!("5.0-permission-denied.log"));
    assert!(
        errors(&lines)
            .contains(&"OpenImageIO write failed: Could not open file \"/sys/frame_0001.png\"")
    );
    let lines = parse_log(render_log!("5.0-cannot-save-log-render.log"));
    assert!(errors(&lines).contains(
        &"Couldn't create directory for file /tmp/rpb-logs/notadir/frame_0002.png: File exists"
    ));
    assert_eq!(frame_times(&lines), [(0.09, None), (0.0, None)]);
}

#[test]
fn missing_camera_is_an_error() {
    for log in [
        render_log!("3.4-no-camera.log"),
        render_log!("4.5-no-camera.log"),
        render_log!("5.0-no-camera.log"),
    ] {
        let lines = parse_log(log);
        assert_eq!(
            errors(&lines),
            [
                "Cannot render, no camera",
                "RuntimeError: Error: Cannot render, no camera"
            ]
        );
        assert!(saved(&lines).is_empty());
    }
}

#[test]
fn wrong_engine_name_is_a_python_error() {
    let lines = parse_log(render_log!("4.5-wrong-engine.log"));
    assert_eq!(
        errors(&lines),
        [
            "TypeError: bpy_struct: item.attr = val: enum \"BLENDER_EEVEE\" not found in \
             ('BLENDER_EEVEE_NEXT', 'BLENDER_WORKBENCH', 'CYCLES')"
        ]
    );
}

#[test]
fn skipped_frames_name_their_file() {
    for (log, name) in [
        (render_log!("3.4-skip-existing.log"), "3.4-skip-existing"),
        (render_log!("4.5-skip-existing.log"), "4.5-skip-existing"),
        (
            render_log!("5.0-skip-existing-log-render.log"),
            "5.0-skip-existing-log-render",
        ),
    ] {
        let lines = parse_log(log);
        let skipped: Vec<_> = lines
            .iter()
            .filter_map(|line| match line {
                LogLine::SkippedExisting { path } => Some(path.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            skipped,
            [Some(format!("/tmp/rpb-logs/out/{name}/frame_0002.png"))]
        );
        assert_eq!(
            saved(&lines),
            [
                format!("/tmp/rpb-logs/out/{name}/frame_0001.png"),
                format!("/tmp/rpb-logs/out/{name}/frame_0003.png"),
            ]
        );
    }
}

#[test]
fn capture_script_and_plain_lines_carry_nothing() {
    for (name, log) in ALL_LOGS {
        for line in log.lines() {
            let ignored = line.starts_with("capture:")
                || line.starts_with("Blender ")
                || line.starts_with("Read blend:")
                || line.starts_with("Traceback (most recent call last):")
                || line.starts_with("  ")
                || line.starts_with("Managed to successfully fallback")
                || line.contains("| Rendering frame")
                || line.contains("| Engine: ")
                || line.contains("| Start rendering: ");
            if ignored {
                assert_eq!(parse_line(line), None, "{name}: {line}");
            }
        }
    }
}

#[test]
fn driver_lines_are_left_alone() {
    assert_eq!(parse_line("rpb-render: frame 3 failed: Error: x"), None);
    assert_eq!(parse_line("rpb-render: Saved: '/x.png'"), None);
    assert!(parse_line("Error: rpb-render: not at the start").is_some());
}

#[test]
fn gpu_and_memory_failures_are_errors() {
    // Forms reported by farm managers' parsers and Cycles' sources, not captured here (no
    // GPU on this machine).
    for line in [
        "Error: CUDA error: Out of memory in cuMemAlloc(&device_pointer, size), line 1056",
        "CUDA error: Launch failed in cuCtxSynchronize(), line 1372",
        "Fra:1 Mem:1271.71M (Peak 1271.71M) | Time:00:04.47 | Mem:0.00M, Peak:0.00M | \
         Scene, ViewLayer | System is out of GPU memory",
        "OptiX error OPTIX_ERROR_INVALID_VALUE in optixAccelBuild (device_optix.cpp:1234)",
        "00:00.734  cycles           | ERROR Out of memory",
        "Writing: /tmp/scene.crash.txt",
    ] {
        assert!(
            matches!(parse_line(line), Some(LogLine::Error { .. })),
            "{line}"
        );
    }
    assert_eq!(
        parse_line(
            "Fra:1 Mem:1.00M (Peak 1.00M) | Time:00:04.47 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | System is out of GPU memory"
        ),
        Some(LogLine::Error {
            message: "System is out of GPU memory".to_owned()
        })
    );
    assert_eq!(
        parse_line("Warning: Unable to open '/tex/wood.png'"),
        Some(LogLine::Warning {
            message: "Unable to open '/tex/wood.png'".to_owned()
        })
    );
    assert_eq!(
        parse_line("Error: Not freed memory blocks: 28007, total unfreed memory 6.374859 MB"),
        Some(LogLine::Warning {
            message: "Not freed memory blocks: 28007, total unfreed memory 6.374859 MB".to_owned()
        })
    );
}

#[test]
fn logger_prefixes_with_hours_memory_and_colour() {
    assert_eq!(
        parse_line("01:02:03.456  render           | Saved: '/o/f_0001.exr'"),
        Some(LogLine::Saved {
            path: "/o/f_0001.exr".to_owned()
        })
    );
    assert_eq!(
        parse_line("00:00.327  12M    render           | Time: 00:03.45 (Saving: 00:00.12)"),
        Some(LogLine::FrameTime {
            seconds: 3.45,
            saving_seconds: Some(0.12)
        })
    );
    assert_eq!(
        parse_line("00:00.327  image.write      | \u{1b}[1;31mERROR\u{1b}[0m Could not open"),
        Some(LogLine::Error {
            message: "Could not open".to_owned()
        })
    );
    assert_eq!(
        parse_line("00:00.327  render           | WARNING Scene has no camera"),
        Some(LogLine::Warning {
            message: "Scene has no camera".to_owned()
        })
    );
    // Not a logger prefix: a progress line's own fields.
    let Some(LogLine::Progress(p)) = parse_line("Fra:-3 | Sample 2/8") else {
        panic!("a progress line");
    };
    assert_eq!((p.frame, p.samples), (Some(-3), Some((2, 8))));
    let Some(LogLine::Progress(p)) = parse_line(
        "Fra:7 Mem:2.00M (Peak 3.00M) | Time:01:00:00.50 | Mem:0.00M, Peak:0.00M | Scene, \
         RenderLayer | Path Tracing Tile 3/8, Sample 40/128",
    ) else {
        panic!("a progress line");
    };
    assert_eq!(p.elapsed_seconds, Some(3600.5));
    assert_eq!(p.samples, Some((40, 128)));
    assert_eq!(p.status, "Path Tracing Tile 3/8, Sample 40/128");
}

#[test]
fn saved_keeps_quotes_inside_the_path() {
    assert_eq!(
        parse_line("Saved: '/out/it's/f_0001.png'"),
        Some(LogLine::Saved {
            path: "/out/it's/f_0001.png".to_owned()
        })
    );
    assert_eq!(parse_line("Saved: ''"), None);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("00:03.45"), Some(3.45));
    assert_eq!(parse_duration(" 01:02:03.50 "), Some(3723.5));
    assert_eq!(parse_duration("10:00"), Some(600.0));
    for bad in [
        "", "3.45", "00:-1", "aa:00.00", "1:2:3:4", "00:1e3", ":00.1", "00:inf",
    ] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
    assert_eq!(parse_line("Time: soon"), None);
    assert_eq!(
        parse_line("Time: 00:00.09"),
        Some(LogLine::FrameTime {
            seconds: 0.09,
            saving_seconds: None
        })
    );
}

fn split_whole(bytes: &[u8]) -> Vec<String> {
    let mut splitter = LineSplitter::new();
    let mut lines = splitter.push(bytes);
    lines.extend(splitter.finish());
    lines
}

fn split_at(bytes: &[u8], cuts: &[usize]) -> Vec<String> {
    let mut splitter = LineSplitter::new();
    let mut lines = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        lines.extend(splitter.push(&bytes[start..cut]));
        start = cut;
    }
    lines.extend(splitter.push(&bytes[start..]));
    lines.extend(splitter.finish());
    lines
}

#[test]
fn splitter_matches_str_lines_on_every_real_log() {
    for (name, log) in ALL_LOGS {
        let expected: Vec<&str> = log.lines().collect();
        assert_eq!(split_whole(log.as_bytes()), expected, "{name}");
    }
}

#[test]
fn splitter_gives_the_same_lines_at_every_byte_offset() {
    let log = render_log!("5.0-skip-existing-log-render.log").as_bytes();
    let whole = split_whole(log);
    for cut in 0..=log.len() {
        assert_eq!(split_at(log, &[cut]), whole, "cut at {cut}");
    }
    let terminators = b"a\r\nb\rc\n\r\nd\r\re\n\n\xc3\xa9\rf\r";
    let whole = split_whole(terminators);
    assert_eq!(whole, ["a", "b", "c", "", "d", "", "e", "", "é", "f"]);
    for first in 0..=terminators.len() {
        for second in first..=terminators.len() {
            assert_eq!(split_at(terminators, &[first, second]), whole);
        }
    }
    let every_byte: Vec<usize> = (1..terminators.len()).collect();
    assert_eq!(split_at(terminators, &every_byte), whole);
}

#[test]
fn splitter_gives_the_same_lines_at_random_offsets() {
    // xorshift64: deterministic, no dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % u64::try_from(bound).unwrap()).unwrap()
    };
    for (name, log) in ALL_LOGS {
        let bytes = log.as_bytes();
        let whole = split_whole(bytes);
        let parsed_whole: Vec<_> = whole.iter().filter_map(|l| parse_line(l)).collect();
        for _ in 0..50 {
            let mut cuts: Vec<usize> = (0..next(20)).map(|_| next(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let lines = split_at(bytes, &cuts);
            assert_eq!(lines, whole, "{name} cut at {cuts:?}");
            let parsed: Vec<_> = lines.iter().filter_map(|l| parse_line(l)).collect();
            assert_eq!(parsed, parsed_whole, "{name}");
        }
    }
}

#[test]
fn splitter_caps_lines_and_replaces_bad_utf8() {
    let mut long = vec![b'x'; MAX_LINE_BYTES + 100];
    long.extend_from_slice(b"\nnext\n");
    let lines = split_at(&long, &[10, MAX_LINE_BYTES - 1, MAX_LINE_BYTES + 50]);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].len(), MAX_LINE_BYTES);
    assert_eq!(lines[1], "next");
    assert_eq!(split_whole(b"a\xffb\n"), ["a\u{fffd}b"]);
    // A multi-byte character cut between chunks survives.
    assert_eq!(split_at("é\n".as_bytes(), &[1]), ["é"]);
    let mut splitter = LineSplitter::new();
    assert!(splitter.push(b"").is_empty());
    assert_eq!(splitter.finish(), None);
    assert_eq!(splitter.push(b"tail"), Vec::<String>::new());
    assert_eq!(splitter.finish().as_deref(), Some("tail"));
}
