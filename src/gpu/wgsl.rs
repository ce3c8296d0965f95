//! A small WGSL preprocessor, run the same way by the runtime and by the naga test, so that shared
//! pieces (the arena binding, activations, the uniform structs) are written once:
//!
//! - `#import NAME` inserts a shared module once per shader (later imports of it are skipped): a file
//!   of `shaders/lib/` by its stem, or a module generated from Rust (see [`crate::gpu::uniforms`]).
//! - `#define NAME` sets a flag (and `#define NAME 16` a value) for the rest of the shader;
//!   `#ifdef NAME`, `#ifndef NAME`, `#else`, `#endif` keep or drop lines (they nest).
//! - `#{NAME}` inside a line is replaced by the value of a define (e.g. a subgroup width that sizes an
//!   array, which WGSL override constants cannot do for function-scope arrays).
//!
//! Defines come from the pipeline's [`Defines`] (f16 weights, subgroup width, ...) and from
//! `#define` lines. Nothing else is rewritten: a shader reads as plain WGSL around its directives.

use std::collections::BTreeMap;

/// Preprocessor defines of one shader variant: name -> value (flags are 1). Ordered, so that equal
/// sets compare and hash equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Defines(BTreeMap<&'static str, u32>);

impl Defines {
    pub fn new() -> Self {
        Self::default()
    }

    /// With flag `name` set (its value is 1).
    pub fn flag(self, name: &'static str) -> Self {
        self.value(name, 1)
    }

    /// With `name` set to `value`.
    pub fn value(mut self, name: &'static str, value: u32) -> Self {
        self.0.insert(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.0.get(name).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `A,B=8`, for labels.
    pub fn label(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                if *v == 1 {
                    (*k).to_string()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Expands `source` with `defines`; `module` resolves `#import` names to their text.
pub fn preprocess(
    name: &str,
    source: &str,
    defines: &Defines,
    module: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut state = State {
        defines: defines.0.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        imported: Vec::new(),
        out: String::with_capacity(source.len() * 2),
    };
    state.expand(name, source, module)?;
    Ok(state.out)
}

struct State {
    defines: BTreeMap<String, u32>,
    imported: Vec<String>,
    out: String,
}

impl State {
    fn expand(
        &mut self,
        name: &str,
        source: &str,
        module: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        // One entry per open #ifdef: (this branch is kept, the enclosing branch is kept).
        let mut stack: Vec<(bool, bool)> = Vec::new();
        let at = |line: usize, what: String| format!("{name}:{}: {what}", line + 1);
        for (i, line) in source.lines().enumerate() {
            let keep = stack.last().is_none_or(|&(kept, _)| kept);
            let trimmed = line.trim_start();
            let mut words = trimmed.split_whitespace();
            match words.next() {
                Some("#ifdef") | Some("#ifndef") => {
                    let Some(flag) = words.next() else {
                        return Err(at(i, "#ifdef needs a name".into()));
                    };
                    let set = self.defines.contains_key(flag);
                    let want = trimmed.starts_with("#ifdef");
                    stack.push((keep && set == want, keep));
                }
                Some("#else") => match stack.last_mut() {
                    Some((kept, outer)) => *kept = *outer && !*kept,
                    None => return Err(at(i, "#else without #ifdef".into())),
                },
                Some("#endif") => {
                    if stack.pop().is_none() {
                        return Err(at(i, "#endif without #ifdef".into()));
                    }
                }
                _ if !keep => {}
                Some("#define") => {
                    let Some(flag) = words.next() else {
                        return Err(at(i, "#define needs a name".into()));
                    };
                    let value = match words.next() {
                        None => 1,
                        Some(v) => v
                            .parse()
                            .map_err(|_| at(i, format!("#define {flag}: {v} is not a number")))?,
                    };
                    self.defines.insert(flag.to_string(), value);
                }
                Some("#import") => {
                    let Some(import) = words.next() else {
                        return Err(at(i, "#import needs a name".into()));
                    };
                    if self.imported.iter().any(|m| m == import) {
                        continue;
                    }
                    self.imported.push(import.to_string());
                    let text = module(import)
                        .ok_or_else(|| at(i, format!("no module {import} to import")))?;
                    self.expand(import, &text, module)?;
                }
                Some(word) if word.starts_with('#') => {
                    return Err(at(i, format!("unknown directive {word}")));
                }
                _ => {
                    let line = self.substitute(line).map_err(|e| at(i, e))?;
                    self.out.push_str(&line);
                    self.out.push('\n');
                }
            }
        }
        if !stack.is_empty() {
            return Err(format!("{name}: #ifdef without #endif"));
        }
        Ok(())
    }

    /// Replaces every `#{NAME}` with the define's value.
    fn substitute(&self, line: &str) -> Result<String, String> {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(start) = rest.find("#{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| "unclosed #{ in a line".to_string())?;
            let name = &after[..end];
            let value = self
                .defines
                .get(name)
                .ok_or_else(|| format!("#{{{name}}} names no define"))?;
            out.push_str(&value.to_string());
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &str, defines: &Defines) -> Result<String, String> {
        let modules = |name: &str| match name {
            "a" => Some("#import b\nfn a() {}".to_string()),
            "b" => Some("fn b() {}".to_string()),
            "c" => Some("fn c(a: array<f32, #{PX}>) {}".to_string()),
            _ => None,
        };
        preprocess("test", source, defines, &modules)
    }

    #[test]
    fn imports_once_and_nested() {
        let out = run("#import a\n#import b\nfn main() {}", &Defines::new()).unwrap();
        assert_eq!(out, "fn b() {}\nfn a() {}\nfn main() {}\n");
    }

    #[test]
    fn conditionals_nest_and_else_flips() {
        let src = "#ifdef X\nx\n#ifndef Y\nnot_y\n#else\ny\n#endif\n#else\nno_x\n#endif\nend";
        assert_eq!(run(src, &Defines::new()).unwrap(), "no_x\nend\n");
        assert_eq!(
            run(src, &Defines::new().flag("X")).unwrap(),
            "x\nnot_y\nend\n"
        );
        assert_eq!(
            run(src, &Defines::new().flag("X").flag("Y")).unwrap(),
            "x\ny\nend\n"
        );
        // A #define inside a dropped branch does not take effect.
        let src =
            "#ifdef Z\n#define Q\n#endif\n#ifdef Q\nq\n#endif\n#define R\n#ifdef R\nr\n#endif";
        assert_eq!(run(src, &Defines::new()).unwrap(), "r\n");
    }

    #[test]
    fn values_are_substituted() {
        let d = Defines::new().value("LANES", 16);
        assert_eq!(
            run("var a: array<f32, #{LANES}>; // #{LANES}", &d).unwrap(),
            "var a: array<f32, 16>; // 16\n"
        );
        assert!(run("#{NOPE}", &d).unwrap_err().contains("NOPE"));
        assert_eq!(
            run("#define PX 4\n#import c\n", &Defines::new()).unwrap(),
            "fn c(a: array<f32, 4>) {}\n"
        );
        assert!(run("#define PX four", &Defines::new()).is_err());
    }

    #[test]
    fn malformed_directives_are_errors() {
        for bad in [
            "#endif",
            "#else",
            "#ifdef X",
            "#import zzz",
            "#pragma x",
            "#{X",
        ] {
            assert!(run(bad, &Defines::new()).is_err(), "{bad}");
        }
        assert!(run("#ifdef A\n#endif", &Defines::new()).is_ok());
    }

    #[test]
    fn labels_list_defines_in_order() {
        let d = Defines::new().value("LANES", 8).flag("F16_WEIGHTS");
        assert_eq!(d.label(), "F16_WEIGHTS,LANES=8");
    }
}
