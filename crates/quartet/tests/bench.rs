//! `quartet bench` in a tiny configuration: the report has its shape, the publisher sent what
//! the run asked (as the server counted it) and every subscriber got every message. It checks
//! completeness, never speed (speed is for the bench itself).

use std::process::Command;

#[test]
fn tiny_bench_reports_every_transport_complete() {
    let out = std::env::temp_dir().join(format!("quartet-bench-test-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_quartet"))
        .args(["bench", "--sizes", "3", "--seconds", "0.5", "--idle", "10", "--poll-interval-ms", "100"])
        .args(["--saturation", "60", "--saturation-subscribers", "3", "--store-publishers", "1,4"])
        .args(["--redis-url", &quartet_redis::test_redis_url(), "--fanout-subscribers", "9"])
        // Two runtime threads: the load generator's multi-threaded runtime, as on a machine
        // with more CPUs than this one.
        .args(["--loadgen-threads", "2"])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("quartet runs");
    assert!(status.success(), "bench failed");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["machine"]["loadgen_threads"], 2);
    let runs = json["runs"].as_array().unwrap();
    let transports: Vec<&str> = runs.iter().map(|r| r["transport"].as_str().unwrap()).collect();
    assert_eq!(transports, ["short-poll", "long-poll", "sse", "ws", "socketio"]);
    // What the server appended, by its own counter, against what the run meant to publish.
    let published_as_asked = |run: &serde_json::Value, seconds: f64| {
        let messages = run["messages"].as_u64().unwrap();
        let asked = (run["publish_rate_per_s"].as_f64().unwrap() * seconds).round() as u64;
        assert_eq!(messages, asked, "{run}");
        assert_eq!(run["server_appended"], messages, "the server saw every publish: {run}");
        assert_eq!(run["expected_deliveries"], messages * run["subscribers"].as_u64().unwrap(), "{run}");
        assert_eq!(run["delivered"], run["expected_deliveries"], "{run}");
    };
    for run in runs {
        assert_eq!(run["subscribers"], 3);
        published_as_asked(run, 0.5);
        assert_eq!(run["complete"], true);
        for key in ["p50", "p99", "p999", "max"] {
            assert!(run["latency_us"][key].as_u64().unwrap() > 0, "{key} in {run}");
        }
        assert!(run["bytes_to_clients_per_delivery"].as_f64().unwrap() > 0.0);
    }
    let saturation = json["saturation"].as_array().unwrap();
    let transports: Vec<&str> = saturation.iter().map(|r| r["transport"].as_str().unwrap()).collect();
    assert_eq!(transports, ["sse", "ws"]);
    let saturation_seconds = json["settings"]["saturation_seconds"].as_f64().unwrap();
    for run in saturation {
        assert_eq!(run["subscribers"], 3);
        published_as_asked(run, saturation_seconds);
    }
    // One subscriber per transport with the CPUs kept awake (short polling aside), complete.
    let awake = json["awake"].as_array().unwrap();
    let transports: Vec<&str> = awake.iter().map(|r| r["transport"].as_str().unwrap()).collect();
    assert_eq!(transports, ["long-poll", "sse", "ws", "socketio"]);
    for run in awake {
        assert_eq!(run["subscribers"], 1);
        published_as_asked(run, 0.5);
    }
    let floor = &json["floor"];
    for key in ["us_per_message_one_per_write", "us_per_message_ten_per_write"] {
        assert!(floor[key].as_f64().unwrap() > 0.0, "{key} in {floor}");
    }
    // The latency floor, normal and awake, relayed every message; the poll floor answered polls
    // and measured its CPU.
    for key in ["relay_floor", "relay_floor_awake"] {
        let relay = &json[key];
        assert_eq!(relay["messages"], (200.0_f64 * 0.5) as u64, "{key}: {relay}");
        assert!(relay["latency_us"]["p50"].as_u64().unwrap() > 0, "{key}: {relay}");
    }
    let responder = &json["responder_floor"];
    assert_eq!(responder["connections"], 10, "{responder}");
    assert!(responder["requests"].as_u64().unwrap() > 0, "{responder}");
    assert!(responder["cpu_us_per_request"].as_f64().unwrap() > 0.0, "{responder}");
    // Every store acked publishes from every publisher count, and delivered every message.
    // Redis is measured when one answers (CI makes sure one does).
    let acked = json["stores"]["acked"].as_array().unwrap();
    let rows: Vec<(&str, u64)> =
        acked.iter().map(|r| (r["store"].as_str().unwrap(), r["publishers"].as_u64().unwrap())).collect();
    let with_redis = rows.len() == 6;
    if std::env::var("QUARTET_REQUIRE_REDIS").as_deref() == Ok("1") {
        assert!(with_redis, "QUARTET_REQUIRE_REDIS=1 and no redis rows: {rows:?}");
    }
    let mut expected = vec![("memory", 1), ("memory", 4), ("sqlite", 1), ("sqlite", 4)];
    if with_redis {
        expected.extend([("redis", 1), ("redis", 4)]);
        // A room's fan-out costs the busiest node one message from Redis per event, whether 1
        // or 3 of its subscribers are on that node.
        let traffic = json["stores"]["traffic"].as_array().unwrap();
        assert_eq!(traffic.len(), 2);
        for t in traffic {
            let per_node = t["max_announcements_per_message_per_node"].as_f64().unwrap();
            assert!((0.9..1.2).contains(&per_node), "{t}");
        }
        assert!(json["stores"]["cross_node"]["messages"].as_u64().unwrap() > 0);
    }
    assert_eq!(rows, expected);
    for row in acked {
        assert!(row["acked"].as_u64().unwrap() >= row["publishers"].as_u64().unwrap(), "{row}");
    }
    for run in json["stores"]["delivery"].as_array().unwrap() {
        assert_eq!(run["delivered"], run["expected_deliveries"], "{run}");
        assert!(run["delivered"].as_u64().unwrap() > 0, "{run}");
    }
    let idle = json["idle"].as_array().unwrap();
    assert_eq!(idle.len(), 5);
    for name in ["report.md", "latency.svg", "bytes.svg", "cpu.svg", "memory.svg"] {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(!text.is_empty(), "{name}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| ws | 3 |") && report.contains("| socketio | 3 |"), "{report}");
    let _ = std::fs::remove_dir_all(&out);
}
