//! One spelling for every named choice (device, precision, marker rule, landscape,
//! connectivity): the names that model metadata, the CLI, the C API's
//! `qca_option_value`, Python and Fiji all parse through `FromStr`, and that `Display`
//! prints. Older spellings stay accepted as aliases, so models exported before the
//! names were unified still load (`local_max`, `edt`).

use crate::error::{Error, Result};

/// Defines `Display`, `FromStr` (case-insensitive, aliases accepted), `serde::Serialize`
/// and `serde::Deserialize` (as the name, through `FromStr`) and `NAMES` (the canonical names, in order) for an enum, from one table.
#[macro_export]
#[doc(hidden)]
macro_rules! vocabulary {
    ($t:ty, $what:literal, [$($v:path => $name:literal $(| $alias:literal)*),+ $(,)?]) => {
        impl $t {
            /// The canonical names, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
            /// What this choice is called in messages.
            pub const WHAT: &'static str = $what;
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $($v => $name),+ })
            }
        }
        impl std::str::FromStr for $t {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($name $(| $alias)* => Ok($v),)+
                    _ => Err($crate::Error::invalid(format!("{} '{}' is not one of: {}", $what, s, Self::NAMES.join(", ")))),
                }
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Parses `Z,Y,X`: three comma-separated numbers (spaces allowed). `what` names the value
/// in the error.
pub fn parse_zyx<T: std::str::FromStr>(what: &str, s: &str) -> Result<[T; 3]> {
    let bad = || Error::invalid(format!("{what} '{s}' is not three numbers Z,Y,X"));
    let v: Vec<T> = s.split(',').map(|a| a.trim().parse::<T>()).collect::<std::result::Result<_, _>>().map_err(|_| bad())?;
    v.try_into().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Connectivity, Device, Landscape, MarkerMode, Precision};

    fn round_trip<T: std::str::FromStr<Err = Error> + std::fmt::Display + PartialEq + std::fmt::Debug>(names: &[&str]) {
        for n in names {
            let v: T = n.parse().unwrap();
            assert_eq!(v.to_string(), *n);
            assert_eq!(n.to_uppercase().parse::<T>().unwrap(), v);
        }
        let e = "nonsense".parse::<T>().unwrap_err().to_string();
        assert!(e.contains(&names.join(", ")), "{e}");
    }

    #[test]
    fn every_name_round_trips_and_old_spellings_still_parse() {
        round_trip::<Device>(Device::NAMES);
        round_trip::<Precision>(Precision::NAMES);
        round_trip::<MarkerMode>(MarkerMode::NAMES);
        round_trip::<Landscape>(Landscape::NAMES);
        round_trip::<Connectivity>(Connectivity::NAMES);
        assert_eq!("local_max".parse::<MarkerMode>().unwrap(), MarkerMode::LocalMaxima);
        assert_eq!("cc".parse::<MarkerMode>().unwrap(), MarkerMode::Components);
        assert_eq!("edt".parse::<Landscape>().unwrap(), Landscape::Distance);
        assert_eq!("center".parse::<Landscape>().unwrap(), Landscape::Centre);
        assert_eq!(serde_json::to_string(&MarkerMode::LocalMaxima).unwrap(), "\"local-max\"");
        assert_eq!(serde_json::from_str::<MarkerMode>("\"local_max\"").unwrap(), MarkerMode::LocalMaxima);
        assert!(serde_json::from_str::<Landscape>("\"nonsense\"").is_err());
    }

    #[test]
    fn zyx_triples() {
        assert_eq!(parse_zyx::<f64>("voxel size", "1.75, 0.8,0.8").unwrap(), [1.75, 0.8, 0.8]);
        assert!(parse_zyx::<usize>("tile", "1,2").unwrap_err().to_string().contains("tile '1,2'"));
        assert!(parse_zyx::<usize>("tile", "1,2,x").is_err());
    }
}
