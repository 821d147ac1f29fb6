//! The model contract: what an ONNX network's `qcanet.*` metadata says, parsed and
//! checked once into [`NetInfo`] (README, "Model files"). A model without metadata
//! loads with the defaults documented on [`NetInfo::default`].
//!
//! Tensors (checked by [`crate::session`] when a network loads): input `image` float32
//! [N,1,D,H,W]; output `prob` float32 [N,C,D,H,W] with C = 1 (sigmoid) or C = 2 (softmax,
//! channel 1 is foreground). A *joint* model (`qcanet.role = joint`) also has an output
//! `centre` and serves as both NSN and NDN in one pass. Metadata keys (`qcanet.*`) carry
//! the training voxel size, normalisation, spatial multiple, tile size and post-processing
//! defaults; named values use the one vocabulary of [`crate::vocab`].

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::postprocess::PostParams;
use crate::preprocess::Normalization;
use crate::tiling::MAX_TILE;
use crate::vocab::parse_zyx;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Nsn,
    Ndn,
    Joint,
}

crate::vocabulary!(Role, "qcanet.role", [Role::Nsn => "nsn", Role::Ndn => "ndn", Role::Joint => "joint"]);

/// Largest spatial multiple a model's metadata may ask for.
pub const MAX_SPATIAL_MULTIPLE: usize = 256;

/// What a network's metadata says (with defaults for what it does not).
#[derive(Clone, Debug)]
pub struct NetInfo {
    pub role: Option<Role>,
    /// Voxel size (z, y, x, micrometres) of the training data; `None` = use the input's grid.
    pub voxel_size: Option<[f64; 3]>,
    pub normalization: Normalization,
    /// Each spatial input size must be a multiple of this.
    pub spatial_multiple: [usize; 3],
    pub tile: [usize; 3],
    pub overlap: [usize; 3],
    /// Post-processing defaults the model was validated with.
    pub post: PostParams,
    pub description: String,
    pub raw: HashMap<String, String>,
}

impl Default for NetInfo {
    /// Without metadata: no resampling, percentile 1–99.9 normalisation, multiple 16
    /// in every axis, 64x128x128 tiles with 16-voxel overlap, and the post-processing
    /// defaults of [`PostParams::default`] (the one table).
    fn default() -> Self {
        NetInfo {
            role: None,
            voxel_size: None,
            normalization: Normalization::Percentile { lo: 1.0, hi: 99.9 },
            spatial_multiple: [16, 16, 16],
            tile: [64, 128, 128],
            overlap: [16, 16, 16],
            post: PostParams::default(),
            description: String::new(),
            raw: HashMap::new(),
        }
    }
}

fn triple<T: std::str::FromStr>(key: &str, s: &str) -> Result<[T; 3]> {
    parse_zyx(key, s).map_err(|e| Error::Model(format!("metadata {e}")))
}

fn num<T: std::str::FromStr>(key: &str, s: &str) -> Result<T> {
    s.trim().parse::<T>().map_err(|_| Error::Model(format!("metadata {key} = '{s}' is not a number")))
}

/// A named choice from metadata, in the one vocabulary (old spellings accepted).
fn named<T: std::str::FromStr<Err = Error>>(key: &str, s: &str) -> Result<T> {
    s.parse::<T>().map_err(|e| Error::Model(format!("metadata {key}: {e}")))
}

impl NetInfo {
    pub fn from_metadata(raw: HashMap<String, String>) -> Result<Self> {
        let mut i = NetInfo::default();
        for (k, v) in &raw {
            match k.as_str() {
                "qcanet.role" => i.role = Some(named(k, v)?),
                "qcanet.voxel_size" => {
                    let t: [f64; 3] = triple(k, v)?;
                    crate::plan::check_voxel_size(t, "qcanet.voxel_size").map_err(|e| Error::Model(e.to_string()))?;
                    i.voxel_size = Some(t);
                }
                "qcanet.normalization" => i.normalization = Normalization::parse(v)?,
                "qcanet.spatial_multiple" => i.spatial_multiple = triple(k, v)?,
                "qcanet.tile" => i.tile = triple(k, v)?,
                "qcanet.overlap" => i.overlap = triple(k, v)?,
                "qcanet.markers" => i.post.markers = named(k, v)?,
                "qcanet.landscape" => i.post.landscape = named(k, v)?,
                "qcanet.connectivity" => i.post.connectivity = named(k, v)?,
                "qcanet.fg_threshold" => i.post.fg_threshold = num(k, v)?,
                "qcanet.centre_threshold" => i.post.centre_threshold = num(k, v)?,
                "qcanet.marker_sigma_um" => i.post.marker_sigma_um = num(k, v)?,
                "qcanet.min_volume_um3" => i.post.min_volume_um3 = num(k, v)?,
                _ => {}
            }
        }
        if i.spatial_multiple.iter().any(|&m| m == 0 || m > MAX_SPATIAL_MULTIPLE)
            || i.tile.iter().any(|&t| t == 0 || t > MAX_TILE)
            || i.overlap.iter().any(|&o| o > MAX_TILE)
        {
            return Err(Error::Model(format!(
                "qcanet.spatial_multiple {:?} must be 1..={MAX_SPATIAL_MULTIPLE}, qcanet.tile {:?} 1..={MAX_TILE}, qcanet.overlap {:?} 0..={MAX_TILE}",
                i.spatial_multiple, i.tile, i.overlap
            )));
        }
        // tile and overlap are kept as written: the plan's TileGrid clamps them, once
        i.raw = raw;
        Ok(i)
    }
}

/// The tensor contract of one input or output: float32, rank 5 ([N, C, D, H, W]), one
/// input channel, one or two output channels (a dynamic size passes).
pub(crate) fn check_5d(name: &str, tensor: &str, t: &ort::value::ValueType, input: bool) -> Result<()> {
    use ort::value::{TensorElementType, ValueType};
    match t {
        ValueType::Tensor { ty, shape, .. } => {
            if *ty != TensorElementType::Float32 {
                return Err(Error::Model(format!("{name}: tensor '{tensor}' is {ty:?}, float32 expected")));
            }
            if shape.len() != 5 {
                return Err(Error::Model(format!(
                    "{name}: tensor '{tensor}' has rank {} ({:?}); [N, C, D, H, W] expected",
                    shape.len(),
                    &shape[..]
                )));
            }
            if input && shape[1] != 1 && shape[1] != -1 {
                return Err(Error::Model(format!("{name}: input '{tensor}' has {} channels, 1 expected", shape[1])));
            }
            if !input && !(shape[1] == 1 || shape[1] == 2 || shape[1] == -1) {
                return Err(Error::Model(format!("{name}: output '{tensor}' has {} channels, 1 or 2 expected", shape[1])));
            }
            Ok(())
        }
        other => Err(Error::Model(format!("{name}: '{tensor}' is not a tensor ({other:?})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::MarkerMode;

    #[test]
    fn metadata_is_parsed_and_checked() {
        let mut raw = HashMap::new();
        raw.insert("qcanet.voxel_size".into(), "1.75,0.8,0.8".into());
        raw.insert("qcanet.tile".into(), "50,130,130".into());
        raw.insert("qcanet.spatial_multiple".into(), "4,8,8".into());
        raw.insert("qcanet.markers".into(), "local_max".into());
        let i = NetInfo::from_metadata(raw.clone()).unwrap();
        assert_eq!(i.voxel_size, Some([1.75, 0.8, 0.8]));
        assert_eq!(i.tile, [50, 130, 130], "kept as written; crate::tiling::TileGrid clamps");
        assert_eq!(i.post.markers, MarkerMode::LocalMaxima);
        raw.insert("qcanet.voxel_size".into(), "1,2".into());
        assert!(NetInfo::from_metadata(raw.clone()).is_err());
        // sizes from a model file are bounded: an absurd multiple or tile is an error
        raw.insert("qcanet.voxel_size".into(), "1.75,0.8,0.8".into());
        raw.insert("qcanet.spatial_multiple".into(), "100000,8,8".into());
        assert!(NetInfo::from_metadata(raw.clone()).unwrap_err().to_string().contains("spatial_multiple"));
        raw.insert("qcanet.spatial_multiple".into(), "4,8,8".into());
        raw.insert("qcanet.tile".into(), "64,4096,192".into());
        assert!(NetInfo::from_metadata(raw).is_err());
    }
}
