// Runs one script in real MicroPython (the WebAssembly port) and reports what happened.
//
// Request (JSON on stdin):
//   code      Python source to run (top-level await allowed), or a list of sources run one
//             after the other in the same VM and globals. Between steps control returns to
//             JS: this port only reclaims garbage then (a gc.collect() inside a running
//             script frees nothing, because the WebAssembly stack cannot be scanned).
//   mounts    [[hostDir, deviceDir], ...] copied into the in-memory filesystem first
//   files     {devicePath: base64} extra files written after the mounts
//   export    [deviceDir, ...] whose files are returned after the run
//   heapsize  initial MicroPython heap in bytes (the heap grows on demand)
// OSError numbers are a board's (ENOENT 2), not the WASI ones the port reports (see
// board_errno.mjs, shared with the virtual board).
// Response (one JSON object on stdout):
//   {stdout, stderr, error: null | {type, traceback}, files: {devicePath: base64}}
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { loadBoardLike } from "./board_errno.mjs";

function mkdirs(FS, dir) {
  if (dir && dir !== "/") FS.mkdirTree(dir);
}

function copyTree(FS, hostDir, deviceDir) {
  mkdirs(FS, deviceDir);
  for (const name of readdirSync(hostDir)) {
    if (name === "__pycache__" || name.startsWith(".")) continue;
    const hostPath = join(hostDir, name);
    const devicePath = (deviceDir === "/" ? "" : deviceDir) + "/" + name;
    if (statSync(hostPath).isDirectory()) copyTree(FS, hostPath, devicePath);
    else FS.writeFile(devicePath, readFileSync(hostPath));
  }
}

function collect(FS, deviceDir, out) {
  let names;
  try {
    names = FS.readdir(deviceDir);
  } catch {
    return;
  }
  for (const name of names) {
    if (name === "." || name === "..") continue;
    const path = (deviceDir === "/" ? "" : deviceDir) + "/" + name;
    if (FS.isDir(FS.stat(path).mode)) collect(FS, path, out);
    else out[path] = Buffer.from(FS.readFile(path)).toString("base64");
  }
}

const request = JSON.parse(readFileSync(0, "utf8"));
// Unbuffered output arrives as byte chunks that may split a UTF-8 sequence.
const outDecoder = new TextDecoder();
const errDecoder = new TextDecoder();
let stdout = "";
let stderr = "";
// File errors carry a board's errno numbers, not WASI's (board_errno.mjs).
const mp = await loadBoardLike(loadMicroPython, {
  stdout: (chunk) => { stdout += outDecoder.decode(chunk, { stream: true }); },
  stderr: (chunk) => { stderr += errDecoder.decode(chunk, { stream: true }); },
  linebuffer: false,
  heapsize: request.heapsize || 1024 * 1024,
});
for (const [hostDir, deviceDir] of request.mounts || []) copyTree(mp.FS, hostDir, deviceDir);
for (const [path, b64] of Object.entries(request.files || {})) {
  mkdirs(mp.FS, path.slice(0, path.lastIndexOf("/")));
  mp.FS.writeFile(path, Buffer.from(b64, "base64"));
}
let error = null;
try {
  for (const step of Array.isArray(request.code) ? request.code : [request.code]) {
    await mp.runPythonAsync(step);
  }
} catch (e) {
  if (e && e.name === "PythonError") error = { type: e.type, traceback: e.message };
  else error = { type: "RuntimeError", traceback: String(e && e.stack ? e.stack : e) };
}
stdout += outDecoder.decode();
stderr += errDecoder.decode();
const files = {};
for (const dir of request.export || []) collect(mp.FS, dir, files);
process.stdout.write(JSON.stringify({ stdout, stderr, error, files }));
