// Board-like errno for the MicroPython WebAssembly port: one piece, used by the runner
// (hw/micropython_runner.mjs) and the virtual board (hw/virtual_board.mjs).
//
// Emscripten's file system reports WASI error numbers (ENOENT is 44), which MicroPython
// passes on in OSError; the errno module and a board's port use the POSIX ones (ENOENT is 2),
// and code on a board (and tools such as mpremote) test for those. Translate at the
// system-call boundary, so `e.errno == errno.ENOENT` means the same here as on a board.
export const WASI_TO_POSIX = new Map([
  [2, 13], // EACCES
  [6, 11], // EAGAIN
  [8, 9], // EBADF
  [10, 16], // EBUSY
  [20, 17], // EEXIST
  [28, 22], // EINVAL
  [29, 5], // EIO
  [31, 21], // EISDIR
  [33, 24], // EMFILE
  [37, 36], // ENAMETOOLONG
  [43, 19], // ENODEV
  [44, 2], // ENOENT
  [48, 12], // ENOMEM
  [51, 28], // ENOSPC
  [52, 38], // ENOSYS
  [54, 20], // ENOTDIR
  [55, 39], // ENOTEMPTY
  [58, 95], // ENOTSUP
  [63, 1], // EPERM
  [69, 30], // EROFS
  [75, 18], // EXDEV
]);

// Wrap the system calls in a WebAssembly import object (before instantiation).
export function boardErrnos(imports) {
  // Both namespaces may be the same object: wrap each function once.
  for (const space of new Set([imports.env, imports.wasi_snapshot_preview1])) {
    if (!space) continue;
    for (const [name, fn] of Object.entries(space)) {
      if (typeof fn !== "function") continue;
      if (name.startsWith("__syscall_")) {
        // Returns -errno on failure.
        space[name] = (...args) => {
          const r = fn(...args);
          return typeof r === "number" && r < 0 && WASI_TO_POSIX.has(-r) ? -WASI_TO_POSIX.get(-r) : r;
        };
      } else if (name.startsWith("fd_")) {
        // Returns errno, 0 on success.
        space[name] = (...args) => {
          const r = fn(...args);
          return typeof r === "number" && WASI_TO_POSIX.has(r) ? WASI_TO_POSIX.get(r) : r;
        };
      }
    }
  }
}

// loadMicroPython(options) with board-like errno: the port instantiates its WebAssembly
// module through WebAssembly.instantiate, wrapped here for the duration of the load.
export async function loadBoardLike(loadMicroPython, options) {
  const instantiate = WebAssembly.instantiate;
  WebAssembly.instantiate = (binary, imports) => {
    boardErrnos(imports);
    return instantiate(binary, imports);
  };
  try {
    return await loadMicroPython(options);
  } finally {
    WebAssembly.instantiate = instantiate;
  }
}
