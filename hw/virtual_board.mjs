// A virtual board: real MicroPython (the WebAssembly port) behind a TCP "serial port".
//
// Started by hw/virtual_board.py. The first line on stdin is the configuration (JSON):
//   host, port      where to listen (port 0: any free port)
//   board           board name, readable on the board as _vboard.board
//   files           {devicePath: hostPath}: the factory image (the firmware tree)
//   fakes           {moduleName: hostPath}: stand-ins for hardware modules (hw/fakes)
//   stateDir        host folder keeping the flash across runs, or null
//   uniqueId        hex of machine.unique_id(), or null for the fake's default
//   heapsize        initial MicroPython heap
//   routes          {"host:port": "host:port"}: a board's connection (or datagram) to the
//                   first goes to the second (a test's stand-in in front of a real
//                   service), or absent
//   asyncioRun      true: asyncio.run(coro) starts coro as a task on the event loop and
//                   returns (the port has no asyncio.run), so firmware on asyncio runs
// Later stdin lines are commands: {"cmd": "adv", "adv": "addr_type,addr_hex,adv_type,rssi,
// data_hex"} (the radio hears an advertisement), {"cmd": "stop"}.
// stdout carries events, one JSON object a line: {"event": "listening", "port": N},
// {"event": "booted", "cause": N}, {"event": "stopped"}.
//
// Two threads. The VM runs in a worker and blocks it while Python runs, as a board's CPU is
// busy; the main thread owns the TCP socket, so it can still act on Ctrl-C. The port has no
// hook for that, so the worker instantiates the WebAssembly module with its memory made
// shared, records which words mp_sched_keyboard_interrupt() writes, and the main thread
// writes the same words: the VM raises KeyboardInterrupt at its next pending check, as a
// board's UART interrupt does. The port's REPL has no soft reset and no raw-paste input
// (mp_hal_stdin_rx_chr is a stub that returns 0), so both are done here: soft reset starts
// a new VM on the same files, and raw-paste is received here and fed to the raw REPL.
import { createSocket } from "node:dgram";
import { createConnection, createServer } from "node:net";
import { createInterface } from "node:readline";
import {
  MessageChannel,
  Worker,
  isMainThread,
  parentPort,
  receiveMessageOnPort,
  workerData,
} from "node:worker_threads";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { boardErrnos } from "./board_errno.mjs";

// Control words shared by the two threads.
const BUSY = 0; // 1 while the worker is inside a VM call
const STALE = 1; // 1 when the main thread wrote an interrupt the VM may not have taken
const ADS = 2; // 1 when advertisements wait on the radio channel
const OUT_W = 3; // output ring: write position (worker)
const OUT_R = 4; // output ring: read position (main thread)
const NET = 5; // 1 when the main thread has answered a network request
const NET_LEN = 6; // length of that answer (JSON) in the network buffer
const CTL_WORDS = 8;
const OUT_SIZE = 1 << 20;
const NET_SIZE = 1 << 20;

// MicroPython's defaults (py/mpconfig.h): a 256-byte stdin buffer, so a 128-byte window.
const PASTE_WINDOW = 128;
const RAW_BANNER = "raw REPL; CTRL-B to exit\r\n";
const PWRON_RESET = 1;
const HARD_RESET = 2;
const SOFT_RESET = 5;

// --- main thread: the serial port ----------------------------------------------------------

async function runMain() {
  const lines = createInterface({ input: process.stdin });
  const iterator = lines[Symbol.asyncIterator]();
  const first = await iterator.next();
  const config = JSON.parse(first.value);
  const ctlBuffer = new SharedArrayBuffer(CTL_WORDS * 4);
  const ctl = new Int32Array(ctlBuffer);
  const outBuffer = new SharedArrayBuffer(OUT_SIZE);
  const out = new Uint8Array(outBuffer);
  const radio = new MessageChannel();
  const netBuffer = new SharedArrayBuffer(NET_SIZE);
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { config, ctlBuffer, outBuffer, netBuffer, radioPort: radio.port2 },
    transferList: [radio.port2],
  });
  const network = new HostNetwork(config.routes || {}, (answer) => {
    const bytes = Buffer.from(JSON.stringify(answer));
    new Uint8Array(netBuffer).set(bytes.subarray(0, NET_SIZE));
    Atomics.store(ctl, NET_LEN, Math.min(bytes.length, NET_SIZE));
    Atomics.store(ctl, NET, 1);
    Atomics.notify(ctl, NET);
  });
  let client = null;
  let interrupt = null; // {memory: Int32Array, writes: [[index, value], ...]}
  let stopping = false;

  const event = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
  const drain = () => {
    const w = Atomics.load(ctl, OUT_W);
    let r = Atomics.load(ctl, OUT_R);
    if (w === r) return;
    const chunk = w > r ? out.slice(r, w) : Buffer.concat([out.slice(r), out.slice(0, w)]);
    Atomics.store(ctl, OUT_R, w);
    Atomics.notify(ctl, OUT_R);
    if (client && !client.destroyed) client.write(Buffer.from(chunk));
  };
  const poller = setInterval(drain, 5);

  const server = createServer((socket) => {
    // One terminal at a time, as on a USB serial port: a new one takes over.
    if (client) client.destroy();
    client = socket;
    socket.setNoDelay(true);
    socket.on("data", (data) => {
      let start = 0;
      for (let i = 0; i < data.length; i++) {
        // Ctrl-C while Python runs interrupts it, as the UART IRQ does; it never reaches stdin.
        if (data[i] === 3 && Atomics.load(ctl, BUSY) === 1 && interrupt) {
          if (i > start) worker.postMessage({ kind: "input", data: data.subarray(start, i) });
          for (const [index, value] of interrupt.writes) Atomics.store(interrupt.memory, index, value);
          Atomics.store(ctl, STALE, 1);
          start = i + 1;
        }
      }
      if (start < data.length) worker.postMessage({ kind: "input", data: data.subarray(start) });
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      if (client === socket) client = null;
    });
  });

  worker.on("message", (msg) => {
    if (msg.kind === "vm") {
      interrupt = { memory: new Int32Array(msg.memory), writes: msg.writes };
    } else if (msg.kind === "flush") {
      drain();
    } else if (msg.kind === "net") {
      network.request(msg.request);
    } else if (msg.kind === "booted") {
      drain();
      event({ event: "booted", cause: msg.cause });
    } else if (msg.kind === "stopped") {
      drain();
      clearInterval(poller);
      event({ event: "stopped" });
      process.exit(0);
    }
  });
  // The port is there from power-on, as a USB serial port is: firmware whose main.py never
  // returns is reached with Ctrl-C, and what it printed before anyone listened is gone.
  server.on("error", (err) => {
    process.stderr.write("virtual board cannot listen: " + err.message + "\n");
    process.exit(3);
  });
  server.listen(config.port, config.host, () =>
    event({ event: "listening", port: server.address().port }),
  );
  worker.on("error", (err) => {
    process.stderr.write("virtual board worker failed: " + (err.stack || err) + "\n");
    process.exit(2);
  });

  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.close();
    if (client) client.destroy();
    network.closeAll();
    worker.postMessage({ kind: "stop" });
    // A board busy in a loop cannot save its flash; do not wait for ever.
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  for (;;) {
    const next = await iterator.next();
    if (next.done) break;
    if (!next.value.trim()) continue;
    const cmd = JSON.parse(next.value);
    if (cmd.cmd === "adv") {
      radio.port1.postMessage(cmd.adv);
      Atomics.store(ctl, ADS, 1);
    } else if (cmd.cmd === "stop") {
      stop();
    }
  }
  stop(); // the host went away
}

// --- worker: the board --------------------------------------------------------------------

async function runWorker() {
  const { config, ctlBuffer, outBuffer, netBuffer, radioPort } = workerData;
  const ctl = new Int32Array(ctlBuffer);
  const ring = new Uint8Array(outBuffer);
  const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");
  const flash = new Flash(config.stateDir);

  let vm = null; // {mp, memory, irq: [[index, value]], irqOld: [[index, value]]}
  let mode = "friendly"; // which REPL the board is in
  let rawLine = []; // what the raw REPL holds, to spot the raw-paste request
  let paste = null; // {data: [], remain} while receiving raw-paste
  let mute = false;
  let dropOk = 0; // bytes of the raw REPL's "OK" to hide (raw-paste does not send it)
  let lastOut = 0;
  let resetRequest = 0; // a reset cause asked for by machine.reset() / soft_reset()
  let delivering = false;
  const inputs = [];
  const radioQueue = [];
  let pumping = false;
  let stopped = false;

  // ---- output: the UART TX FIFO
  function put(byte) {
    let w = Atomics.load(ctl, OUT_W);
    const next = (w + 1) % OUT_SIZE;
    while (next === Atomics.load(ctl, OUT_R)) Atomics.wait(ctl, OUT_R, Atomics.load(ctl, OUT_R), 20);
    ring[w] = byte;
    Atomics.store(ctl, OUT_W, next);
  }
  function emit(text) {
    for (const b of Buffer.from(text, "latin1")) put(b);
  }
  function vmOutput(chunk) {
    for (const b of chunk) {
      if (mute) continue;
      if (dropOk > 0) {
        dropOk--;
        continue;
      }
      // A board's stdout turns "\n" into "\r\n"; this port prints bare "\n".
      if (b === 10 && lastOut !== 13) put(13);
      put(b);
      lastOut = b;
    }
  }
  const flush = () => parentPort.postMessage({ kind: "flush" });

  // ---- the network: the board's sockets are the host's, the call blocks like a board's
  function hostNet(requestJson) {
    Atomics.store(ctl, NET, 0);
    parentPort.postMessage({ kind: "net", request: JSON.parse(requestJson) });
    Atomics.wait(ctl, NET, 0);
    const length = Atomics.load(ctl, NET_LEN);
    return Buffer.from(new Uint8Array(netBuffer).slice(0, length)).toString();
  }

  // ---- the VM
  async function newVm() {
    let memory = null;
    const instantiate = WebAssembly.instantiate;
    WebAssembly.instantiate = async (binary, imports) => {
      const ticks = imports.env.mp_js_ticks_ms;
      // Every time.sleep*/ticks* call passes here: the radio's IRQs are delivered then.
      imports.env.mp_js_ticks_ms = () => {
        if (Atomics.load(ctl, ADS) === 1) deliverRadio();
        return ticks();
      };
      boardErrnos(imports);
      const result = await instantiate(shareMemory(new Uint8Array(binary)), imports);
      memory = result.instance.exports.memory;
      return result;
    };
    let mp;
    try {
      mp = await loadMicroPython({
        stdout: vmOutput,
        stderr: vmOutput,
        linebuffer: false,
        heapsize: config.heapsize || 1024 * 1024,
      });
    } finally {
      WebAssembly.instantiate = instantiate;
    }
    mp.registerJsModule("_vboard", {
      board: config.board,
      take_adv: () => (radioQueue.length ? radioQueue.shift() : null),
      request_reset: (cause) => {
        resetRequest = cause;
      },
      net: hostNet,
    });
    const irq = learnInterrupt(mp, memory);
    parentPort.postMessage({ kind: "vm", memory: memory.buffer, writes: irq.writes });
    return { mp, memory, irq };
  }

  // Which words mp_sched_keyboard_interrupt() writes, and what they held before: learnt on
  // an idle VM (the pending exception and the scheduler state), then again after one
  // KeyboardInterrupt has been raised (its traceback pointer, which the call clears).
  function learnInterrupt(mp, memory) {
    const module = mp._module;
    const diff = () => {
      const words = new Int32Array(memory.buffer);
      const before = words.slice();
      module._mp_sched_keyboard_interrupt();
      const found = new Map();
      for (let i = 0; i < before.length; i++) {
        if (words[i] !== before[i]) {
          found.set(i, [words[i], before[i]]);
          words[i] = before[i];
        }
      }
      return found;
    };
    const found = diff();
    // Undoing a stale interrupt restores these; a cleared traceback pointer can stay cleared.
    const old = [...found].map(([i, [, before]]) => [i, before]);
    module._mp_sched_keyboard_interrupt();
    try {
      mp.runPython("for _ in range(2):\n    pass");
    } catch {}
    for (const [i, pair] of diff()) found.set(i, pair);
    if (found.size < 2) throw new Error("could not locate the VM's pending-exception words");
    const writes = [...found].map(([i, [now]]) => [i, now]);
    return { writes, old };
  }

  // An interrupt the main thread wrote just as the VM went idle must not hit the next command;
  // the Ctrl-C goes to the REPL instead, which is what a board does with it at the prompt.
  function takeStaleInterrupt() {
    if (Atomics.load(ctl, STALE) === 0) return false;
    Atomics.store(ctl, STALE, 0);
    const words = new Int32Array(vm.memory.buffer);
    let pending = false;
    for (const [i, v] of vm.irq.writes) if (Atomics.load(words, i) === v) pending = true;
    for (const [i, v] of vm.irq.old) Atomics.store(words, i, v);
    return pending;
  }

  function call(fn) {
    Atomics.store(ctl, BUSY, 1);
    try {
      return fn();
    } finally {
      Atomics.store(ctl, BUSY, 0);
    }
  }

  function run(code) {
    try {
      call(() => vm.mp.runPython(code));
      return null;
    } catch (e) {
      if (e && e.name === "PythonError") return e;
      throw e;
    }
  }

  // Input that arrived while the board booted. A Ctrl-C in it was meant for the boot scripts
  // (it came before the VM could be interrupted): they are skipped, and the REPL gets it.
  function ctrlCWhileBooting() {
    for (;;) {
      const msg = receiveMessageOnPort(parentPort);
      if (!msg) break;
      onMessage(msg.message);
    }
    return inputs.some((chunk) => chunk.includes(3));
  }

  // boot.py and main.py, as pyexec_file runs them: errors printed, the REPL still reached.
  function runFile(path) {
    if (!vm.mp.FS.analyzePath(path).exists || ctrlCWhileBooting()) return;
    const error = run(
      "exec(compile(open(%s).read(), %s, 'exec'))".replaceAll("%s", JSON.stringify(path)),
    );
    if (error && error.type !== "Reset") vmOutput(Buffer.from(error.message));
  }

  async function boot(cause) {
    const files = vm ? snapshot(vm.mp.FS) : flash.load(config.files);
    vm = await newVm();
    const FS = vm.mp.FS;
    FS.chdir("/");
    for (const dir of ["/home/web_user", "/home", "/tmp"]) {
      try {
        FS.rmdir(dir);
      } catch {}
    }
    for (const [path, content] of files) writeDevice(FS, path, content);
    for (const [name, host] of Object.entries(config.fakes)) {
      writeDevice(FS, "/.hw/" + name + ".py", readFileSync(host));
    }
    flash.save(snapshot(FS));
    // The stand-ins behave as built-in modules: ahead of /lib, like frozen ones on a board.
    let setup = "__import__('sys').path.insert(2, '/.hw')\n";
    setup += "__import__('machine')._RESET_CAUSE = %d\n".replace("%d", String(cause));
    if (config.uniqueId) {
      setup += "__import__('machine')._UNIQUE_ID = bytes.fromhex('%s')\n".replace("%s", config.uniqueId);
    }
    if (config.asyncioRun) {
      // The port's asyncio runs on the JS event loop and has no run(): start the task there.
      setup += "import asyncio\nasyncio.run = asyncio.create_task\ndel asyncio\n";
    }
    // Not interruptible (BUSY stays 0, so a Ctrl-C that arrives now is input, as one that
    // reaches a board while its C start-up runs): a tool that connects at power-on and
    // sends Ctrl-C at once must not abort this and kill the board (seen in CI).
    let error = null;
    try {
      vm.mp.runPython(setup);
    } catch (e) {
      if (!e || e.name !== "PythonError") throw e;
      error = e;
    }
    if (error) throw new Error("virtual board set-up failed: " + error.message);
    resetRequest = 0;
    runFile("/boot.py");
    if (mode === "friendly" && !resetRequest) runFile("/main.py");
    if (resetRequest) return reboot(resetRequest); // boot.py or main.py reset the board
    mute = mode === "raw";
    call(() => vm.mp.replInit());
    if (mode === "raw") {
      call(() => vm.mp.replProcessChar(1));
      mute = false;
      emit(RAW_BANNER + ">");
    }
    mute = false;
    rawLine = [];
    paste = null;
    takeStaleInterrupt();
    if (radioQueue.length) deliverRadio(); // heard while it booted
    flush();
    parentPort.postMessage({ kind: "booted", cause });
  }

  async function reboot(cause) {
    if (cause === HARD_RESET) mode = "friendly";
    else emit("MPY: soft reboot\r\n");
    await boot(cause);
  }

  // ---- the REPL, byte by byte; returns a reset cause when the byte made the board reset
  function feed(byte) {
    const result = call(() => vm.mp.replProcessChar(byte));
    if (takeStaleInterrupt()) call(() => vm.mp.replProcessChar(3));
    if (resetRequest) return resetRequest;
    return result !== 0 ? SOFT_RESET : 0;
  }

  function input(byte) {
    if (paste) return pasteInput(byte);
    if (mode === "friendly") {
      if (byte === 1) {
        mode = "raw";
        rawLine = [];
      }
      return feed(byte);
    }
    if (byte === 1 && rawLine.length === 2 && rawLine[0] === 5 && rawLine[1] === 65) {
      // Raw-paste: take the source here with flow control, then hand it to the raw REPL.
      mute = true;
      feed(3); // clear the "\x05A" the raw REPL has buffered
      mute = false;
      rawLine = [];
      paste = { data: [], remain: PASTE_WINDOW };
      emit("R\x01" + String.fromCharCode(PASTE_WINDOW & 0xff, PASTE_WINDOW >> 8) + "\x01");
      return 0;
    }
    if (byte === 2) mode = "friendly";
    if (byte >= 1 && byte <= 4) rawLine = [];
    else rawLine.push(byte);
    return feed(byte);
  }

  function pasteInput(byte) {
    if (byte === 4 || byte === 3) {
      const source = byte === 4 ? paste.data : [...Buffer.from("raise KeyboardInterrupt")];
      paste = null;
      emit("\x04");
      for (const b of source) {
        const cause = feed(b);
        if (cause) return cause;
      }
      dropOk = 2;
      return feed(4);
    }
    paste.data.push(byte);
    if (--paste.remain === 0) {
      paste.remain = PASTE_WINDOW;
      emit("\x01");
    }
    return 0;
  }

  async function pump() {
    if (pumping || stopped || !vm) return;
    pumping = true;
    try {
      while (inputs.length && !stopped) {
        const chunk = inputs.shift();
        for (let i = 0; i < chunk.length; i++) {
          const cause = input(chunk[i]);
          if (cause) {
            inputs.unshift(chunk.subarray(i + 1));
            await reboot(cause);
            break;
          }
        }
        flush();
      }
      scheduleSave();
    } finally {
      pumping = false;
    }
  }

  // ---- the radio: advertisements into the fake bluetooth module's IRQ handler
  function deliverRadio() {
    if (delivering || !vm) return;
    delivering = true;
    try {
      Atomics.store(ctl, ADS, 0);
      for (;;) {
        const msg = receiveMessageOnPort(radioPort);
        if (!msg) break;
        radioQueue.push(msg.message);
      }
      if (!radioQueue.length) return;
      const BUSY_BEFORE = Atomics.load(ctl, BUSY);
      Atomics.store(ctl, BUSY, 1);
      try {
        vm.mp.runPython(
          "__import__('sys').modules.get('bluetooth') and " +
            "__import__('sys').modules['bluetooth']._host_poll()",
        );
      } catch (e) {
        if (!(e && e.name === "PythonError")) throw e;
        vmOutput(Buffer.from(e.message));
      } finally {
        Atomics.store(ctl, BUSY, BUSY_BEFORE);
      }
      radioQueue.length = 0; // heard while nobody listened: gone, as over the air
    } finally {
      delivering = false;
    }
  }

  // ---- flash kept on the host
  let saveTimer = null;
  function scheduleSave() {
    if (saveTimer || !flash.dir) return;
    saveTimer = setTimeout(() => {
      saveTimer = null;
      if (vm && !pumping) flash.save(snapshot(vm.mp.FS));
    }, 100);
  }

  function onMessage(msg) {
    if (msg.kind === "input") {
      inputs.push(Buffer.from(msg.data));
    } else if (msg.kind === "stop" && !stopped) {
      stopped = true;
      if (vm) flash.save(snapshot(vm.mp.FS));
      parentPort.postMessage({ kind: "stopped" });
    }
  }
  parentPort.on("message", async (msg) => {
    onMessage(msg);
    await pump();
  });
  radioPort.on("message", (adv) => {
    radioQueue.push(adv);
    if (!pumping) {
      deliverRadio();
      flush();
    }
  });
  // Firmware on asyncio yields to the event loop: keep the host copy of the flash current.
  setInterval(() => {
    if (vm && !pumping && flash.dir) flash.save(snapshot(vm.mp.FS));
  }, 1000).unref();

  await boot(PWRON_RESET);
  await pump();
}

// --- the host side of the board's sockets -----------------------------------------------------

const ECONNRESET = 104;
const ECONNREFUSED = 111;
const ETIMEDOUT = 110;
const EAGAIN = 11;
const EBADF = 9;
const EHOSTUNREACH = 113;
const EMSGSIZE = 90;
const EINVAL = 22;

// TCP connections and UDP sockets the board opened, made on the host (main thread). One
// request at a time: the board's thread waits for each answer. Answers: {ok: value} or
// {errno: n}, errno as MicroPython's on a board (POSIX numbers, hw/board_errno.mjs).
class HostNetwork {
  constructor(routes, answer) {
    this.routes = routes; // "host:port" -> "host:port": where the host really connects
    this.answer = answer;
    // id -> {socket, udp, inbox: Buffer[] (TCP) or [Buffer, host, port][] (UDP), ended, waiter}
    this.sockets = new Map();
    this.next = 1;
  }

  request(req) {
    const handler = this["op_" + req.op];
    if (!handler) this.answer({ errno: EINVAL });
    else handler.call(this, req);
  }

  route(host, port) {
    const route = this.routes[host + ":" + port];
    if (!route) return [host, port];
    const at = route.lastIndexOf(":");
    return [route.slice(0, at), Number(route.slice(at + 1))];
  }

  op_connect({ host, port, timeout }) {
    [host, port] = this.route(host, port);
    const socket = createConnection({ host, port });
    const entry = { socket, inbox: [], ended: false, waiter: null };
    let done = false;
    const finish = (answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.answer(answer);
    };
    const timer =
      timeout === null ? null : setTimeout(() => {
        socket.destroy();
        finish({ errno: ETIMEDOUT });
      }, timeout);
    socket.on("connect", () => {
      const id = this.next++;
      this.sockets.set(id, entry);
      socket.setNoDelay(true);
      finish({ ok: id });
    });
    socket.on("data", (data) => {
      entry.inbox.push(data);
      this.wake(entry);
    });
    socket.on("end", () => {
      entry.ended = true;
      this.wake(entry);
    });
    socket.on("close", () => {
      entry.ended = true;
      this.wake(entry);
    });
    socket.on("error", (err) => {
      entry.ended = true;
      entry.reset = true;
      const errno = err.code === "ECONNREFUSED" ? ECONNREFUSED : EHOSTUNREACH;
      finish({ errno });
      this.wake(entry);
    });
  }

  op_send({ id, data }) {
    const entry = this.sockets.get(id);
    if (!entry) return this.answer({ errno: EBADF });
    if (entry.ended || entry.socket.destroyed) return this.answer({ errno: ECONNRESET });
    const bytes = Buffer.from(data, "hex");
    entry.socket.write(bytes);
    this.answer({ ok: bytes.length });
  }

  op_recv({ id, n, timeout }) {
    const entry = this.sockets.get(id);
    if (!entry) return this.answer({ errno: EBADF });
    const reply = () => {
      if (entry.inbox.length) {
        const all = Buffer.concat(entry.inbox);
        const take = all.subarray(0, n);
        entry.inbox = all.length > n ? [all.subarray(n)] : [];
        this.answer({ ok: take.toString("hex") });
        return true;
      }
      if (entry.ended) {
        this.answer(entry.reset ? { errno: ECONNRESET } : { ok: "" });
        return true;
      }
      return false;
    };
    this.answerWhen(entry, timeout, reply);
  }

  // Answer with reply() now if it can, else when the socket next wakes its entry: EAGAIN
  // for a caller that would not wait (timeout 0), ETIMEDOUT after timeout milliseconds
  // (null: no limit). reply() answers and returns true when it had something to say.
  answerWhen(entry, timeout, reply) {
    if (reply()) return;
    if (timeout === 0) return this.answer({ errno: EAGAIN });
    const timer =
      timeout === null ? null : setTimeout(() => {
        entry.waiter = null;
        this.answer({ errno: ETIMEDOUT });
      }, timeout);
    entry.waiter = () => {
      if (reply()) {
        clearTimeout(timer);
        entry.waiter = null;
      }
    };
  }

  // A UDP socket on the host, bound to a free port on every interface.
  op_udp_open() {
    const socket = createSocket("udp4");
    const entry = { socket, udp: true, inbox: [], ended: false, waiter: null };
    let bound = false;
    socket.on("message", (data, rinfo) => {
      entry.inbox.push([data, rinfo.address, rinfo.port]);
      this.wake(entry);
    });
    socket.on("error", (err) => {
      if (!bound) this.answer({ errno: err.code === "EADDRINUSE" ? 98 : EINVAL });
    });
    socket.bind(0, () => {
      bound = true;
      const id = this.next++;
      this.sockets.set(id, entry);
      this.answer({ ok: id });
    });
  }

  // Answered once the host has sent it (or failed to: a name it cannot resolve, too big).
  op_sendto({ id, data, host, port }) {
    const entry = this.sockets.get(id);
    if (!entry || !entry.udp) return this.answer({ errno: EBADF });
    [host, port] = this.route(host, port);
    const bytes = Buffer.from(data, "hex");
    entry.socket.send(bytes, port, host, (err) => {
      if (!err) return this.answer({ ok: bytes.length });
      const errno = err.code === "EMSGSIZE" ? EMSGSIZE : err.code === "EINVAL" ? EINVAL : EHOSTUNREACH;
      this.answer({ errno });
    });
  }

  // One datagram, cut to n bytes as a board's recvfrom does (the rest of it is gone).
  op_recvfrom({ id, n, timeout }) {
    const entry = this.sockets.get(id);
    if (!entry || !entry.udp) return this.answer({ errno: EBADF });
    const reply = () => {
      if (!entry.inbox.length) return false;
      const [data, host, port] = entry.inbox.shift();
      this.answer({ ok: [data.subarray(0, n).toString("hex"), host, port] });
      return true;
    };
    this.answerWhen(entry, timeout, reply);
  }

  op_close({ id }) {
    const entry = this.sockets.get(id);
    if (entry) {
      if (entry.udp) entry.socket.close();
      else entry.socket.end();
      this.sockets.delete(id);
    }
    this.answer({ ok: null });
  }

  wake(entry) {
    if (entry.waiter) entry.waiter();
  }

  closeAll() {
    for (const entry of this.sockets.values()) {
      if (entry.udp) entry.socket.close();
      else entry.socket.destroy();
    }
    this.sockets.clear();
  }
}

// --- helpers --------------------------------------------------------------------------------

// Re-encode the module's memory as shared (flag 3, with a maximum) so another thread can
// write it. Nothing else in the module changes.
function shareMemory(binary) {
  const leb = (pos) => {
    let result = 0;
    let shift = 0;
    let b;
    do {
      b = binary[pos++];
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return [result, pos];
  };
  const encode = (n) => {
    const out = [];
    do {
      let b = n & 0x7f;
      n = Math.floor(n / 128);
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  let pos = 8;
  while (pos < binary.length) {
    const id = binary[pos];
    const [size, body] = leb(pos + 1);
    if (id === 5) {
      const [count, p] = leb(body);
      if (count !== 1) break;
      const flags = binary[p];
      const [min, q] = leb(p + 1);
      const max = flags & 1 ? leb(q)[0] : 65536;
      const content = [1, 3, ...encode(min), ...encode(max)];
      const section = [5, ...encode(content.length), ...content];
      const out = new Uint8Array(binary.length - (body + size - pos) + section.length);
      out.set(binary.subarray(0, pos));
      out.set(section, pos);
      out.set(binary.subarray(body + size), pos + section.length);
      return out;
    }
    pos = body + size;
  }
  throw new Error("unexpected micropython.wasm: no single memory section to share");
}

function writeDevice(FS, path, content) {
  if (content === null) {
    FS.mkdirTree(path);
    return;
  }
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (dir) FS.mkdirTree(dir);
  FS.writeFile(path, content);
}

const SYSTEM_DIRS = new Set(["/dev", "/proc", "/.hw"]);

// Every file and folder on the board's flash: [[path, Uint8Array | null (a folder)], ...].
function snapshot(FS) {
  const out = [];
  const walk = (dir) => {
    for (const name of FS.readdir(dir)) {
      if (name === "." || name === "..") continue;
      const path = (dir === "/" ? "" : dir) + "/" + name;
      if (SYSTEM_DIRS.has(path)) continue;
      if (FS.isDir(FS.stat(path).mode)) {
        out.push([path, null]);
        walk(path);
      } else {
        out.push([path, FS.readFile(path)]);
      }
    }
  };
  walk("/");
  return out;
}

// The flash as files under <stateDir>/flash, written like littlefs commits: each file to a
// temporary name, then renamed over the old one, so a killed board leaves whole files.
class Flash {
  constructor(stateDir) {
    this.dir = stateDir ? join(stateDir, "flash") : null;
    this.saved = new Map(); // path -> Buffer last written
  }

  load(factory) {
    if (this.dir && existsSync(this.dir)) {
      const out = [];
      const walk = (host, device) => {
        for (const name of readdirSync(host).sort()) {
          if (name.endsWith(".vboard-tmp")) continue;
          const h = join(host, name);
          const d = device + "/" + name;
          if (statSync(h).isDirectory()) {
            out.push([d, null]);
            walk(h, d);
          } else {
            out.push([d, readFileSync(h)]);
          }
        }
      };
      walk(this.dir, "");
      return out;
    }
    return Object.entries(factory).map(([device, host]) => [device, readFileSync(host)]);
  }

  save(files) {
    if (!this.dir) return;
    mkdirSync(this.dir, { recursive: true });
    const seen = new Set();
    for (const [path, content] of files) {
      seen.add(path);
      const host = join(this.dir, path);
      if (content === null) {
        mkdirSync(host, { recursive: true });
        continue;
      }
      const old = this.saved.get(path);
      if (old && Buffer.compare(old, content) === 0) continue;
      mkdirSync(dirname(host), { recursive: true });
      writeFileSync(host + ".vboard-tmp", content);
      renameSync(host + ".vboard-tmp", host);
      this.saved.set(path, Buffer.from(content));
    }
    const remove = (host, device) => {
      for (const name of readdirSync(host)) {
        const h = join(host, name);
        const d = device + "/" + name;
        if (statSync(h).isDirectory()) {
          remove(h, d);
          if (!seen.has(d)) rmSync(h, { recursive: true, force: true });
        } else if (!seen.has(d)) {
          rmSync(h, { force: true });
          this.saved.delete(d);
        }
      }
    };
    remove(this.dir, "");
  }
}

if (isMainThread) await runMain();
else await runWorker();
