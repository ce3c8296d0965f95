//! Feature points: the intermediate maps a backbone hands to a detector or segmenter, with the
//! indices, module names, channels and reductions of timm's `feature_info` for the same network.

use serde::Serialize;

use super::{Backbone, Res2NetConfig, EXPANSION};
use crate::error::{Error, Result};

/// One point where a feature map can be taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeaturePoint {
    /// timm's `out_indices` index.
    pub index: usize,
    /// The module whose output it is (`act1`, `layer1`, `level5`): also its name in output files.
    pub name: String,
    pub channels: usize,
    /// Nominal stride against the input.
    pub reduction: usize,
}

impl Res2NetConfig {
    /// Every feature point, by index. ResNet layout: `act1` (the stem's last activation, stride 2),
    /// then `layer1`..`layer4` (strides 4 to 32); DLA: `level0`..`level5` (strides 1 to 32).
    pub fn feature_points(&self) -> Vec<FeaturePoint> {
        let point = |index, name: String, channels, reduction| FeaturePoint {
            index,
            name,
            channels,
            reduction,
        };
        match &self.backbone {
            Backbone::ResNet(r) => {
                let mut v = vec![point(0, "act1".into(), r.stem.channels(), 2)];
                v.extend((0..4).map(|s| {
                    point(
                        s + 1,
                        format!("layer{}", s + 1),
                        EXPANSION * r.planes[s],
                        4 << s,
                    )
                }));
                v
            }
            Backbone::Dla(d) => (0..6)
                .map(|l| point(l, format!("level{l}"), d.channels[l], 1 << l))
                .collect(),
        }
    }

    /// The points timm's `features_only=True` returns without `out_indices`: all five for the ResNet
    /// layout, levels 1 to 5 for DLA (a stride-1 map is rarely wanted).
    pub fn default_out_indices(&self) -> Vec<usize> {
        match &self.backbone {
            Backbone::ResNet(_) => (0..5).collect(),
            Backbone::Dla(_) => (1..6).collect(),
        }
    }

    /// Checks requested feature indices (the defaults when `None`) and returns them ascending: an
    /// empty list, an index out of range or a repeated index is an input error listing the points.
    pub fn out_indices(&self, requested: Option<&[usize]>) -> Result<Vec<usize>> {
        let Some(requested) = requested else {
            return Ok(self.default_out_indices());
        };
        let points = self.feature_points();
        let problem = if requested.is_empty() {
            Some("an empty list".to_string())
        } else if let Some(i) = requested.iter().find(|&&i| i >= points.len()) {
            Some(format!("index {i} out of range"))
        } else {
            let repeated = requested
                .iter()
                .enumerate()
                .find(|(k, i)| requested[..*k].contains(i));
            repeated.map(|(_, i)| format!("index {i} twice"))
        };
        if let Some(found) = problem {
            let valid: Vec<String> = points
                .iter()
                .map(|p| format!("{} {}", p.index, p.name))
                .collect();
            return Err(Error::input(
                "out indices",
                format!("distinct feature points of {}", valid.join(", ")),
                found,
            ));
        }
        let mut sorted = requested.to_vec();
        sorted.sort_unstable();
        Ok(sorted)
    }
}

/// Parses `1,3,4` into indices; anything that is not a comma-separated list of numbers is an input
/// error.
pub fn parse_out_indices(text: &str) -> Result<Vec<usize>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|s| {
            s.trim().parse::<usize>().map_err(|_| {
                Error::input(
                    "out indices",
                    "a comma-separated list of feature point indices like 1,3,4",
                    format!("'{}'", crate::error::one_line(text)),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::preset;

    #[test]
    fn points_follow_timm_feature_info() {
        let r = preset("res2net50d").unwrap();
        let names: Vec<_> = r.feature_points().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["act1", "layer1", "layer2", "layer3", "layer4"]);
        let chans: Vec<_> = r.feature_points().iter().map(|p| p.channels).collect();
        assert_eq!(chans, [64, 256, 512, 1024, 2048]);
        assert_eq!(r.default_out_indices(), [0, 1, 2, 3, 4]);
        let d = preset("dla60_res2net").unwrap();
        let red: Vec<_> = d.feature_points().iter().map(|p| p.reduction).collect();
        assert_eq!(red, [1, 2, 4, 8, 16, 32]);
        assert_eq!(d.feature_points()[5].name, "level5");
        assert_eq!(d.default_out_indices(), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn bad_indices_list_the_valid_points() {
        let r = preset("res2net50_26w_4s").unwrap();
        assert_eq!(r.out_indices(Some(&[4, 1, 3])).unwrap(), [1, 3, 4]);
        for (bad, says) in [
            (&[][..], "an empty list"),
            (&[5][..], "index 5 out of range"),
            (&[1, 2, 1][..], "index 1 twice"),
        ] {
            let e = r.out_indices(Some(bad)).unwrap_err();
            let msg = e.to_string();
            assert!(e.is_bad_input(), "{msg}");
            assert!(
                msg.contains(says) && msg.contains("0 act1, 1 layer1"),
                "{msg}"
            );
        }
        assert_eq!(parse_out_indices(" 1, 3").unwrap(), [1, 3]);
        assert!(parse_out_indices("1;3").unwrap_err().is_bad_input());
    }
}
