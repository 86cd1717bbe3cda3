//! The script step: JavaScript (QuickJS, through `rquickjs`) for what rules cannot say.
//!
//! A script file is the **body of a function** `(msg, record)`, as a Mirth transformer is:
//!
//! ```js
//! // routes/scripts/adt.js
//! if (msg.get("PID-8") === "") msg.set("PID-8", "U");
//! for (let i = 0; i < msg.count("OBX"); i++) {
//!   if (msg.get(`OBX(${i})-11`) === "X") msg.remove(`OBX(${i})`);
//! }
//! if (record.patient && record.patient.deceased) return false;   // filter the message
//! return ["emr"];                                                 // or choose destinations
//! ```
//!
//! - `msg.get(path)` → text (`""` for an empty element) or `null` (no such element); `msg.set(path, value)`; `msg.setRaw(path, er7)` (value
//!   may hold `^`/`&`); `msg.remove(path)` (segment, repetition, or clears a field) → whether
//!   something was there; `msg.count("OBX")`; `msg.segments()` → the segment ids in order;
//!   `msg.addSegment("ZPI|1|x")`; `msg.toString()` → the message (segments end with `\r`).
//!   Paths are the same as everywhere in Aorta (`PID-5-1`, `OBX(2)-5`, `PID.5.1`).
//! - `record`: the Clinical record of the received message as a plain object (read only: what a
//!   script changes in it is not kept).
//! - The return value: nothing or `true` → go on; `false` → the message is filtered by this
//!   route; a destination name or a list of them → deliver only to those of the route's `to`.
//! - A thrown error (or a bad path) makes the message `errored` for this route, with the script
//!   file and line in the error.
//!
//! # Sandbox
//! QuickJS has no file, network or process access of its own, and none is given: no modules can
//! be loaded. Each evaluating thread has one runtime with a memory limit, a stack limit, and an
//! interrupt handler that stops a call running past its time limit. The global object and every
//! built-in reachable from it are frozen after setup, and a script runs as a function body in
//! strict mode, so one message cannot leave anything behind for the next. (One consequence of
//! frozen prototypes: assigning a property that a built-in prototype also has, such as
//! `obj.toString = ...`, fails; use another name or `Object.defineProperty`.) After a failed
//! call, the thread's runtime is thrown away and made anew, so a call stopped for time or
//! memory leaves nothing half-done behind.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::{Context, Ctx, Function, Object, Persistent, Runtime, Value};

use crate::hl7::{OwnedMessage, Path};

/// Limits on one script call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Heap the runtime may use, bytes.
    pub memory_bytes: usize,
    /// Longest run of one call.
    pub time: Duration,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            memory_bytes: 32 << 20,
            time: Duration::from_millis(200),
        }
    }
}

/// A compiled script.
#[derive(Debug, Clone)]
pub struct Script {
    /// The file it came from (or `route NAME step N` for inline code).
    pub file: String,
    source: Arc<str>,
    id: u64,
    uses_record: bool,
    limits: ScriptLimits,
}

/// What a script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptOutcome {
    /// Go on with the next step.
    Continue,
    /// Filter the message (`return false`).
    Filter,
    /// Deliver only to these destinations.
    Destinations(Vec<String>),
}

/// A script failure: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// Script file.
    pub file: String,
    /// 1-based line, when the engine said.
    pub line: Option<u32>,
    /// The error message.
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Freezes everything reachable from the global object.
const SETUP: &str = r#"(function () {
  const seen = new Set();
  function freeze(o) {
    if (o === null || (typeof o !== "object" && typeof o !== "function") || seen.has(o)) return;
    seen.add(o);
    for (const k of Reflect.ownKeys(o)) {
      const d = Object.getOwnPropertyDescriptor(o, k);
      if (d && "value" in d) freeze(d.value);
      if (d && d.get) freeze(d.get);
      if (d && d.set) freeze(d.set);
    }
    freeze(Object.getPrototypeOf(o));
    Object.freeze(o);
  }
  freeze(globalThis);
})();"#;

// Fields drop in order: values held for the runtime go first, the runtime last (QuickJS
// asserts that no object outlives its runtime).
struct Engine {
    compiled: HashMap<u64, Persistent<Function<'static>>>,
    msg: Persistent<Object<'static>>,
    context: Context,
    runtime: Runtime,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    static CURRENT: RefCell<Option<OwnedMessage>> = const { RefCell::new(None) };
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Most compiled scripts a thread keeps before starting afresh (old routes after reloads).
const MAX_COMPILED: usize = 1024;

impl Engine {
    fn new() -> Result<Engine, String> {
        let runtime = Runtime::new().map_err(|e| format!("starting the script engine: {e}"))?;
        runtime.set_max_stack_size(512 * 1024);
        runtime.set_interrupt_handler(Some(Box::new(|| {
            DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() >= t))
        })));
        let context =
            Context::full(&runtime).map_err(|e| format!("starting the script engine: {e}"))?;
        let msg = context.with(|ctx| -> rquickjs::Result<Persistent<Object<'static>>> {
            let msg = Object::new(ctx.clone())?;
            msg.set("get", Function::new(ctx.clone(), js_get)?)?;
            msg.set("set", Function::new(ctx.clone(), js_set)?)?;
            msg.set("setRaw", Function::new(ctx.clone(), js_set_raw)?)?;
            msg.set("remove", Function::new(ctx.clone(), js_remove)?)?;
            msg.set("count", Function::new(ctx.clone(), js_count)?)?;
            msg.set("segments", Function::new(ctx.clone(), js_segments)?)?;
            msg.set("addSegment", Function::new(ctx.clone(), js_add_segment)?)?;
            msg.set("toString", Function::new(ctx.clone(), js_to_string)?)?;
            ctx.globals().set("__aortaMsg", msg.clone())?;
            ctx.eval::<(), _>(SETUP)?;
            Ok(Persistent::save(&ctx, msg))
        });
        let msg = msg.map_err(|e| format!("setting up the script engine: {e}"))?;
        Ok(Engine {
            runtime,
            context,
            compiled: HashMap::new(),
            msg,
        })
    }
}

/// Throws `new Error(message)`. (rquickjs' own helper assigns `message` to a fresh object,
/// which the frozen `Error.prototype` forbids.)
fn throw(ctx: &Ctx<'_>, message: &str) -> rquickjs::Error {
    let made = ctx
        .globals()
        .get::<_, rquickjs::function::Constructor>("Error")
        .and_then(|c| c.construct::<_, Value>((message,)));
    match made {
        Ok(v) => ctx.throw(v),
        Err(e) => e,
    }
}

fn with_msg<T>(
    ctx: &Ctx<'_>,
    f: impl FnOnce(&mut OwnedMessage) -> Result<T, String>,
) -> rquickjs::Result<T> {
    CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(m) => f(m).map_err(|e| throw(ctx, &e)),
        None => Err(throw(ctx, "no message is being processed")),
    })
}

fn parse_path(what: &str, path: &str) -> Result<Path, String> {
    Path::parse(path).map_err(|e| format!("msg.{what}(\"{path}\"): {e}"))
}

fn js_text(v: &Value<'_>) -> Option<String> {
    if v.is_null() || v.is_undefined() {
        None
    } else if let Some(s) = v.as_string() {
        s.to_string().ok()
    } else if let Some(i) = v.as_int() {
        Some(i.to_string())
    } else if let Some(f) = v.as_float() {
        Some(if f.fract() == 0.0 && f.abs() < 1e15 {
            format!("{}", f as i64)
        } else {
            f.to_string()
        })
    } else {
        v.as_bool().map(|b| b.to_string())
    }
}

fn js_get(ctx: Ctx<'_>, path: String) -> rquickjs::Result<Option<String>> {
    with_msg(&ctx, |m| {
        let p = parse_path("get", &path)?;
        Ok(m.get(&p).map(|v| v.into_owned()))
    })
}

fn js_set<'js>(ctx: Ctx<'js>, path: String, value: Value<'js>) -> rquickjs::Result<()> {
    with_msg(&ctx, |m| {
        let p = parse_path("set", &path)?;
        match js_text(&value) {
            Some(t) => m.set(&p, &t),
            None => m.clear(&p),
        }
        .map_err(|e| format!("msg.set(\"{path}\"): {e}"))
    })
}

fn js_set_raw(ctx: Ctx<'_>, path: String, value: String) -> rquickjs::Result<()> {
    with_msg(&ctx, |m| {
        let p = parse_path("setRaw", &path)?;
        m.set_raw(&p, value.as_bytes())
            .map_err(|e| format!("msg.setRaw(\"{path}\"): {e}"))
    })
}

fn js_remove(ctx: Ctx<'_>, path: String) -> rquickjs::Result<bool> {
    with_msg(&ctx, |m| {
        let p = parse_path("remove", &path)?;
        m.delete(&p)
            .map_err(|e| format!("msg.remove(\"{path}\"): {e}"))
    })
}

fn js_count(ctx: Ctx<'_>, id: String) -> rquickjs::Result<usize> {
    with_msg(&ctx, |m| Ok(m.segment_ids().filter(|s| *s == id).count()))
}

fn js_segments(ctx: Ctx<'_>) -> rquickjs::Result<Vec<String>> {
    with_msg(&ctx, |m| Ok(m.segment_ids().map(str::to_string).collect()))
}

fn js_add_segment(ctx: Ctx<'_>, text: String) -> rquickjs::Result<()> {
    with_msg(&ctx, |m| {
        m.append_segment(text.as_bytes())
            .map_err(|e| format!("msg.addSegment: {e}"))
    })
}

fn js_to_string(ctx: Ctx<'_>) -> rquickjs::Result<String> {
    with_msg(&ctx, |m| {
        Ok(String::from_utf8_lossy(&m.encode()).into_owned())
    })
}

impl Script {
    /// Compiles `source` (the body of a function of `msg` and `record`); a syntax error names
    /// the file and line.
    pub fn compile(file: &str, source: &str, limits: ScriptLimits) -> Result<Script, ScriptError> {
        let script = Script {
            file: file.to_string(),
            source: Arc::from(source),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            uses_record: source.contains("record"),
            limits,
        };
        ENGINE.with(|cell| -> Result<(), ScriptError> {
            let mut slot = cell.borrow_mut();
            let engine = engine(&mut slot).map_err(|m| script.error(None, m))?;
            script.function(engine).map(|_| ())
        })?;
        Ok(script)
    }

    fn error(&self, line: Option<u32>, message: String) -> ScriptError {
        ScriptError {
            file: self.file.clone(),
            line,
            message,
        }
    }

    /// This script's function in the thread's engine, compiled on first use.
    fn function(&self, engine: &mut Engine) -> Result<Persistent<Function<'static>>, ScriptError> {
        if let Some(f) = engine.compiled.get(&self.id) {
            return Ok(f.clone());
        }
        // The body starts on the wrapper's first line, so line numbers match the file.
        let wrapped = format!("(function (msg, record) {{{}\n}})", self.source);
        let mut options = EvalOptions::default();
        options.filename = Some(self.file.clone());
        let compiled = engine.context.with(|ctx| {
            match ctx.eval_with_options::<Function, _>(wrapped, options) {
                Ok(f) => Ok(Persistent::save(&ctx, f)),
                Err(e) => Err(self.exception(&ctx, e)),
            }
        })?;
        engine.compiled.insert(self.id, compiled.clone());
        Ok(compiled)
    }

    fn exception(&self, ctx: &Ctx<'_>, e: rquickjs::Error) -> ScriptError {
        if !matches!(e, rquickjs::Error::Exception) {
            return self.error(None, e.to_string());
        }
        let caught = ctx.catch();
        if let Some(ex) = caught.as_exception() {
            let message = ex.message().unwrap_or_else(|| "error".into());
            let line = ex
                .stack()
                .and_then(|s| line_in(&s, &self.file))
                .or_else(|| {
                    // Syntax errors name the place in the message's own stack only.
                    ex.get::<_, Option<i32>>("lineNumber")
                        .ok()
                        .flatten()
                        .and_then(|n| u32::try_from(n).ok())
                });
            return self.error(line, message);
        }
        let text = js_text(&caught).unwrap_or_else(|| "a non-Error value was thrown".into());
        self.error(None, format!("uncaught: {text}"))
    }

    /// Runs the script on `msg` (changed in place). `record_json` makes the record's JSON when
    /// the script uses it.
    pub fn run(
        &self,
        msg: &mut OwnedMessage,
        record_json: &dyn Fn() -> String,
    ) -> Result<ScriptOutcome, ScriptError> {
        let record = self.uses_record.then(record_json);
        let taken = std::mem::replace(msg, OwnedMessage::new(msg.delimiters()));
        CURRENT.with(|c| *c.borrow_mut() = Some(taken));
        let result = ENGINE.with(|cell| {
            let mut slot = cell.borrow_mut();
            let outcome = self.call(&mut slot, record);
            if outcome.is_err() {
                // After a time or memory stop the runtime may be in any state, and errors are
                // rare: start afresh.
                *slot = None;
            }
            outcome
        });
        DEADLINE.with(|d| d.set(None));
        if let Some(m) = CURRENT.with(|c| c.borrow_mut().take()) {
            *msg = m;
        }
        result
    }

    fn call(
        &self,
        slot: &mut Option<Engine>,
        record: Option<String>,
    ) -> Result<ScriptOutcome, ScriptError> {
        let engine = engine(slot).map_err(|m| self.error(None, m))?;
        if engine.compiled.len() > MAX_COMPILED {
            engine.compiled.clear();
        }
        let function = self.function(engine)?;
        engine.runtime.set_memory_limit(self.limits.memory_bytes);
        let msg = engine.msg.clone();
        DEADLINE.with(|d| d.set(Some(Instant::now() + self.limits.time)));
        let outcome = engine.context.with(|ctx| {
            let f = function
                .restore(&ctx)
                .map_err(|e| self.error(None, e.to_string()))?;
            let msg = msg
                .restore(&ctx)
                .map_err(|e| self.error(None, e.to_string()))?;
            let record = match record {
                Some(json) => ctx.json_parse(json).map_err(|e| self.exception(&ctx, e))?,
                None => Value::new_undefined(ctx.clone()),
            };
            let returned: Value = f.call((msg, record)).map_err(|e| self.exception(&ctx, e))?;
            self.outcome(&returned)
        });
        let stopped = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() >= t));
        match outcome {
            Err(e) if stopped => Err(self.error(
                e.line,
                format!(
                    "stopped after the time limit of {} ms ({})",
                    self.limits.time.as_millis(),
                    e.message
                ),
            )),
            other => other,
        }
    }

    fn outcome(&self, v: &Value<'_>) -> Result<ScriptOutcome, ScriptError> {
        if v.is_undefined() || v.is_null() || v.as_bool() == Some(true) {
            return Ok(ScriptOutcome::Continue);
        }
        if v.as_bool() == Some(false) {
            return Ok(ScriptOutcome::Filter);
        }
        if let Some(s) = v.as_string() {
            let s = s.to_string().map_err(|e| self.error(None, e.to_string()))?;
            return Ok(ScriptOutcome::Destinations(vec![s]));
        }
        if let Some(a) = v.as_array() {
            let mut names = Vec::new();
            for item in a.iter::<Value>() {
                let item = item.map_err(|e| self.error(None, e.to_string()))?;
                match item.as_string().and_then(|s| s.to_string().ok()) {
                    Some(s) => names.push(s),
                    None => {
                        return Err(self.error(
                            None,
                            "the returned list must hold destination names (strings)".into(),
                        ))
                    }
                }
            }
            return Ok(ScriptOutcome::Destinations(names));
        }
        Err(self.error(
            None,
            format!(
                "the script returned a {}; return nothing/true (go on), false (filter) or destination names",
                v.type_name()
            ),
        ))
    }
}

fn engine(slot: &mut Option<Engine>) -> Result<&mut Engine, String> {
    if slot.is_none() {
        *slot = Some(Engine::new()?);
    }
    slot.as_mut()
        .ok_or_else(|| "script engine unavailable".to_string())
}

/// The line of `file` in a QuickJS stack trace (`at f (file:LINE:COL)`).
fn line_in(stack: &str, file: &str) -> Option<u32> {
    let at = stack.find(&format!("{file}:"))? + file.len() + 1;
    let digits: String = stack[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] = b"MSH|^~\\&|ADT|H|||20240301||ADT^A01|1|P|2.5\rPID|1||A1^^^H^MR||DOE^JO||19800101|\rOBX|1|ST|x||a\rOBX|2|ST|y||b\r";

    fn run(source: &str) -> (Result<ScriptOutcome, ScriptError>, OwnedMessage) {
        let s = Script::compile("test.js", source, ScriptLimits::default()).unwrap();
        let mut m = OwnedMessage::parse(ADT).unwrap();
        let r = s.run(&mut m, &|| r#"{"patient":{"sex":"F"}}"#.to_string());
        (r, m)
    }

    #[test]
    fn reads_changes_and_decides() {
        let (r, m) = run(r#"if (!msg.get("PID-8")) msg.set("PID-8", "U");
msg.set("PID-5-2", "JO & CO");
msg.setRaw("PID-11", "1 MAIN^^TOWN");
for (let i = msg.count("OBX") - 1; i >= 0; i--) if (msg.get(`OBX(${i})-5`) === "a") msg.remove(`OBX(${i})`);
msg.addSegment("ZPI|1|" + record.patient.sex);
return ["emr", "archive"];"#);
        assert_eq!(
            r.unwrap(),
            ScriptOutcome::Destinations(vec!["emr".into(), "archive".into()])
        );
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.contains("PID|1||A1^^^H^MR||DOE^JO \\T\\ CO||19800101|U|||1 MAIN^^TOWN\r"),
            "{text}"
        );
        assert!(!text.contains("OBX|1|"));
        assert!(text.ends_with("OBX|2|ST|y||b\rZPI|1|F\r"), "{text}");
        assert_eq!(run("return false;").0.unwrap(), ScriptOutcome::Filter);
        assert_eq!(
            run("return 'emr';").0.unwrap(),
            ScriptOutcome::Destinations(vec!["emr".into()])
        );
        assert_eq!(
            run("msg.segments().length === 4;").0.unwrap(),
            ScriptOutcome::Continue
        );
        assert!(run("return 5;")
            .0
            .unwrap_err()
            .message
            .contains("returned a int"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let (r, _) = run("let a = 1;\nthrow new Error('no visit number');");
        let e = r.unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
        assert_eq!(e.to_string(), "test.js:2: no visit number");
        let (r, _) = run("\n\nmsg.get('PID-x');");
        let e = r.unwrap_err();
        assert!(e.message.contains("msg.get(\"PID-x\")"), "{e:?}");
        assert_eq!(e.line, Some(3));
        let e = Script::compile("bad.js", "let x = ;", ScriptLimits::default()).unwrap_err();
        assert_eq!(e.file, "bad.js");
        assert!(
            e.message.to_lowercase().contains("unexpected") || e.message.contains("expecting"),
            "{e:?}"
        );
    }

    #[test]
    fn sandbox_limits_and_isolation() {
        let limits = ScriptLimits {
            memory_bytes: 8 << 20,
            time: Duration::from_millis(50),
        };
        let mut m = OwnedMessage::parse(ADT).unwrap();
        let spin = Script::compile("spin.js", "while (true) {}", limits).unwrap();
        let e = spin.run(&mut m, &String::new).unwrap_err();
        assert!(e.message.contains("time limit"), "{e:?}");
        let hog = Script::compile(
            "hog.js",
            "let a = []; while (true) a.push('x'.repeat(1000));",
            limits,
        )
        .unwrap();
        let e = hog.run(&mut m, &String::new).unwrap_err();
        assert!(
            e.message.contains("memory") || e.message.contains("time limit"),
            "{e:?}"
        );
        // The message survives a failed script, and the engine works afterwards.
        assert_eq!(m, OwnedMessage::parse(ADT).unwrap());
        let (r, _) = run("globalThis.leak = 1;");
        assert!(r.is_err(), "globals are frozen");
        let (r, _) = run("leak2 = 1;");
        assert!(r.is_err(), "strict mode: no implicit globals");
        let (r, _) = run("Array.prototype.evil = 1;");
        assert!(r.is_err(), "built-ins are frozen");
        let (r, _) = run("msg.get = null;");
        assert!(r.is_err(), "msg is frozen");
        let (r, _) = run("return typeof require === 'undefined' && typeof std === 'undefined' && typeof os === 'undefined';");
        assert_eq!(r.unwrap(), ScriptOutcome::Continue);
    }
}
