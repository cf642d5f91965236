//! The addon's request reader and dispatcher under plain `python3`, with a stub `bpy`: fast
//! checks of the protocol side that need no Blender (the real-session test covers the rest).

use std::time::Duration;

use crate::pod::{Pod, which};

const SCRIPT: &str = r#"
import json, random, sys, types
bpy = types.ModuleType("bpy")
bpy.app = types.SimpleNamespace(
    handlers=types.SimpleNamespace(persistent=lambda f: f, load_post=[]),
    timers=None, background=False)
sys.modules["bpy"] = bpy
sys.path.insert(0, sys.argv[1])
import rpb_mcp

requests = [
    {"type": "execute_code", "params": {"code": "print('{[\\\"]}' + 'é✓' * 3)\n"}},
    {"type": "ping"},
    {"type": "x", "params": {"a": [1, {"b": "\\\\ } ]"}]}},
]
data = b" \n".join(json.dumps(r, ensure_ascii=False).encode() for r in requests)
rng = random.Random(6)
for trial in range(500):
    reader = rpb_mcp.RequestReader()
    seen, i = [], 0
    while i < len(data):
        n = rng.randint(1, 9)
        seen += reader.feed(data[i:i + n])
        i += n
    assert seen == requests, (trial, seen)

try:
    rpb_mcp.RequestReader().feed(b"GET / HTTP/1.0\r\n")
    raise SystemExit("garbage was accepted")
except rpb_mcp.ProtocolError as error:
    assert "expected a JSON object" in str(error)

assert rpb_mcp.execute({"type": "ping"}) == {"status": "success", "result": {"pong": True}}
assert rpb_mcp.execute({"type": "nope"}) == {"status": "error", "message": "Unknown command type: nope"}
bad = rpb_mcp.execute({"type": "ping", "params": {"x": 1}})
assert bad["status"] == "error" and "bad parameters for ping" in bad["message"], bad
assert rpb_mcp.execute([1])["status"] == "error"
assert rpb_mcp.execute({"type": "get_polyhaven_status"})["result"]["enabled"] is False
print("addon protocol ok")
"#;

#[tokio::test]
async fn the_addon_reader_reassembles_any_split_and_rejects_garbage() {
    assert!(
        which("python3").is_some(),
        "this test needs python3 (Debian package python3, a dependency of blender)"
    );
    let pod = Pod::new().unwrap();
    let run = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(pod.assets())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "addon protocol ok\n"
    );
}
