//! A small WGSL preprocessor, run the same way by the runtime and by the naga test, so that shared
//! pieces (the arena binding, activations, the uniform structs) are written once:
//!
//! - `#import NAME` inserts a shared module once per shader (later imports of it are skipped): a file
//!   of `shaders/lib/` by its stem, or a module generated from Rust (see [`crate::gpu::uniforms`]).
//! - `#define NAME` sets a flag (and `#define NAME 16` a value) for the rest of the shader;
//!   `#ifdef NAME`, `#ifndef NAME`, `#else`, `#endif` keep or drop lines (they nest).
//! - `#{EXPR}` inside a line is replaced by the value of an integer expression over defines (`+ - * /
//!   %`, parentheses): e.g. a subgroup width that sizes an array, which WGSL override constants cannot
//!   do for function-scope arrays, or an unrolled register's index.
//! - `#for NAME in A..B` ... `#endfor` repeats its lines with `NAME` defined as A, A+1, ..., B-1 (A
//!   and B expressions as above): register blocks unrolled in the source, so that no accumulator
//!   array is ever indexed dynamically (which moves it out of registers on some drivers).
//!
//! Defines come from the pipeline's [`Defines`] (f16 weights, subgroup width, ...) and from
//! `#define` lines. Nothing else is rewritten: a shader reads as plain WGSL around its directives.

use std::collections::BTreeMap;

/// Preprocessor defines of one shader variant: name -> value (flags are 1), and which names are
/// flags (for labels). Ordered, so that equal sets compare and hash equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Defines(
    BTreeMap<&'static str, u32>,
    std::collections::BTreeSet<&'static str>,
);

impl Defines {
    pub fn new() -> Self {
        Self::default()
    }

    /// With flag `name` set (its value is 1).
    pub fn flag(self, name: &'static str) -> Self {
        let mut d = self.value(name, 1);
        d.1.insert(name);
        d
    }

    /// With `name` set to `value`.
    pub fn value(mut self, name: &'static str, value: u32) -> Self {
        self.0.insert(name, value);
        self.1.remove(name);
        self
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.0.get(name).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `A,B=8` (flags bare), for labels.
    pub fn label(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                if self.1.contains(k) {
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
        let lines: Vec<&str> = source.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            let keep = stack.last().is_none_or(|&(kept, _)| kept);
            let trimmed = line.trim_start();
            let mut words = trimmed.split_whitespace();
            match words.next() {
                Some("#for") => {
                    let end = matching_endfor(&lines, i)
                        .ok_or_else(|| at(i, "#for without #endfor".into()))?;
                    if keep {
                        let (var, range) = parse_for(trimmed).ok_or_else(|| {
                            at(i, format!("expected #for NAME in A..B, found {trimmed}"))
                        })?;
                        let (a, b) = range;
                        let (a, b) = (
                            self.eval(a).map_err(|e| at(i, e))?,
                            self.eval(b).map_err(|e| at(i, e))?,
                        );
                        let body = lines[i + 1..end].join("\n");
                        let saved = self.defines.get(var).copied();
                        for v in a..b {
                            self.defines.insert(var.to_string(), v);
                            self.expand(name, &body, module)?;
                        }
                        match saved {
                            Some(v) => self.defines.insert(var.to_string(), v),
                            None => self.defines.remove(var),
                        };
                    }
                    i = end + 1;
                    continue;
                }
                Some("#endfor") => return Err(at(i, "#endfor without #for".into())),
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
                    if !self.imported.iter().any(|m| m == import) {
                        self.imported.push(import.to_string());
                        let text = module(import)
                            .ok_or_else(|| at(i, format!("no module {import} to import")))?;
                        self.expand(import, &text, module)?;
                    }
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
            i += 1;
        }
        if !stack.is_empty() {
            return Err(format!("{name}: #ifdef without #endif"));
        }
        Ok(())
    }

    /// Replaces every `#{EXPR}` with the expression's value.
    fn substitute(&self, line: &str) -> Result<String, String> {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(start) = rest.find("#{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| "unclosed #{ in a line".to_string())?;
            out.push_str(&self.eval(&after[..end])?.to_string());
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The value of an integer expression over defines: numbers, names, `+ - * / %`, parentheses.
    fn eval(&self, expr: &str) -> Result<u32, String> {
        let tokens: Vec<String> = tokenize(expr);
        let mut pos = 0;
        let v = self.sum(&tokens, &mut pos)?;
        if pos != tokens.len() {
            return Err(format!("cannot read the expression {expr}"));
        }
        u32::try_from(v).map_err(|_| format!("{expr} = {v} is not a u32"))
    }

    fn sum(&self, t: &[String], pos: &mut usize) -> Result<i64, String> {
        let mut v = self.product(t, pos)?;
        while let Some(op) = t.get(*pos).filter(|op| *op == "+" || *op == "-") {
            let minus = op == "-";
            *pos += 1;
            let rhs = self.product(t, pos)?;
            v = if minus { v - rhs } else { v + rhs };
        }
        Ok(v)
    }

    fn product(&self, t: &[String], pos: &mut usize) -> Result<i64, String> {
        let mut v = self.atom(t, pos)?;
        while let Some(op) = t
            .get(*pos)
            .filter(|op| matches!(op.as_str(), "*" | "/" | "%"))
        {
            let op = op.clone();
            *pos += 1;
            let rhs = self.atom(t, pos)?;
            v = match op.as_str() {
                "*" => v * rhs,
                _ if rhs == 0 => return Err("division by zero".into()),
                "/" => v / rhs,
                _ => v % rhs,
            };
        }
        Ok(v)
    }

    fn atom(&self, t: &[String], pos: &mut usize) -> Result<i64, String> {
        let token = t.get(*pos).ok_or("an expression ends early")?;
        *pos += 1;
        if token == "(" {
            let v = self.sum(t, pos)?;
            if t.get(*pos).map(String::as_str) != Some(")") {
                return Err("unclosed ( in an expression".into());
            }
            *pos += 1;
            return Ok(v);
        }
        if let Ok(n) = token.parse::<i64>() {
            return Ok(n);
        }
        self.defines
            .get(token.as_str())
            .map(|&v| i64::from(v))
            .ok_or_else(|| format!("{token} names no define"))
    }
}

/// Numbers, names and single-character operators of an expression.
fn tokenize(expr: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in expr.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

/// `#for NAME in A..B` -> (NAME, (A, B)).
fn parse_for(line: &str) -> Option<(&str, (&str, &str))> {
    let rest = line.strip_prefix("#for")?.trim();
    let (var, range) = rest.split_once(" in ")?;
    let (a, b) = range.split_once("..")?;
    Some((var.trim(), (a.trim(), b.trim())))
}

/// The index of the `#endfor` closing the `#for` at `start`.
fn matching_endfor(lines: &[&str], start: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, line) in lines.iter().enumerate().skip(start) {
        match line.split_whitespace().next() {
            Some("#for") => depth += 1,
            Some("#endfor") => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
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
    fn loops_unroll_with_expressions() {
        let d = Defines::new().value("M", 2);
        let src = "#for i in 0..M\n#for j in 1..3\nlet a#{i}_#{j} = #{i * 4 + j} + #{(i + 1) * (j % 2)};\n#endfor\n#endfor";
        assert_eq!(
            run(src, &d).unwrap(),
            "let a0_1 = 1 + 1;\nlet a0_2 = 2 + 0;\nlet a1_1 = 5 + 2;\nlet a1_2 = 6 + 0;\n"
        );
        // The loop variable is only defined inside its loop; an empty range emits nothing.
        assert!(run("#for i in 0..1\n#endfor\n#{i}", &d).is_err());
        assert_eq!(run("#for i in 3..3\nx\n#endfor", &d).unwrap(), "");
        for bad in [
            "#for i in 0..2",
            "#endfor",
            "#for i 0..2\n#endfor",
            "#{2 - 5}",
            "#{1 / 0}",
            "#{(1}",
        ] {
            assert!(run(bad, &d).is_err(), "{bad}");
        }
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
        let d = Defines::new()
            .value("LANES", 8)
            .flag("F16_WEIGHTS")
            .value("P", 1);
        assert_eq!(d.label(), "F16_WEIGHTS,LANES=8,P=1");
    }
}
