//! Input sizes on the command line: `S` for a square, `HxW` for any other.

/// An input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub h: usize,
    pub w: usize,
}
impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.h, self.w)
    }
}

/// A positive number.
fn positive(s: &str) -> Option<usize> {
    s.trim().parse::<usize>().ok().filter(|&v| v > 0)
}

/// `AxB` (or `AXB`) of positive numbers: an input size's `HxW`, a conv tile.
pub fn parse_pair(text: &str) -> Option<(usize, usize)> {
    let (a, b) = text.split_once(['x', 'X'])?;
    positive(a).zip(positive(b))
}

/// Parses `224` or `800x1333` (clap's value parser: the message is shown after the argument).
pub fn parse_size(text: &str) -> std::result::Result<Size, String> {
    let size = if text.contains(['x', 'X']) {
        parse_pair(text).map(|(h, w)| Size { h, w })
    } else {
        positive(text).map(|s| Size { h: s, w: s })
    };
    size.ok_or_else(|| {
        format!("expected a size S or HxW of positive numbers (224, 800x1333), found '{text}'")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_and_rectangular_sizes_parse() {
        assert_eq!(parse_size("224"), Ok(Size { h: 224, w: 224 }));
        assert_eq!(parse_size("800x1333"), Ok(Size { h: 800, w: 1333 }));
        assert_eq!(parse_size("64X32"), Ok(Size { h: 64, w: 32 }));
        for bad in ["", "0", "x", "800x", "800x0", "-3", "8x8x8", "abc"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("expected") && e.contains(bad), "{bad}: {e}");
        }
    }
}
