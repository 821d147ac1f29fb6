//! A segmented time lapse, frame by frame: the engine behind `qcanet track`/`analyse`,
//! `qca_track_*`, `qcanet.track` and Fiji's Track Nuclei.
//!
//! Frames are added one at a time ([`TimeLapse::add_frame`]); each is measured (volume,
//! centroid, surface, intensity) and its voxel overlaps with the frame before are counted,
//! and then its labels are dropped: only the previous frame's labels and the per-frame
//! tables are kept, so a long series of large frames costs one frame of labels plus a few
//! hundred bytes per nucleus. [`TimeLapse::analyse`] links the frames
//! ([`crate::track::link`]) and derives the criteria ([`crate::criteria`]).

use std::collections::HashMap;

use serde::Serialize;

use crate::criteria::{csv_number, division_rounds, frame_criteria, DivisionRound, FrameCriteria, FrameMeasures};
use crate::error::{Error, Result};
use crate::track::{link, overlaps, FrameNuclei, TrackParams, Tracking};

/// The frames of a series measured so far.
#[derive(Debug)]
pub struct TimeLapse {
    voxel: [f64; 3],
    dims: Option<[usize; 3]>,
    first_frame: usize,
    frames: Vec<FrameMeasures>,
    /// Nuclei over all frames added (bounded by `track::MAX_DETECTIONS`).
    detections: usize,
    overlaps: Vec<HashMap<(u32, u32), u64>>,
    previous: Option<Vec<u32>>,
}

/// One nucleus in one frame of a track (a row of the tracks table).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrackPoint {
    pub track: u32,
    pub frame: usize,
    /// Its label in the frame's segmentation.
    pub label: u32,
    pub centroid_um: [f64; 3],
    pub volume_um3: f64,
    pub surface_um2: f64,
    pub mean_intensity: f64,
    /// The track's parent (0 for none): the mother, or the track before a bridged gap.
    pub parent: u32,
}

/// Tracks, criteria and division rounds of a series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    pub tracking: Tracking,
    pub criteria: Vec<FrameCriteria>,
    pub rounds: Vec<DivisionRound>,
    pub points: Vec<TrackPoint>,
}

impl TimeLapse {
    /// An empty series on a grid of `voxel` micrometres (z, y, x) whose first frame is
    /// numbered `first_frame`.
    pub fn new(voxel: [f64; 3], first_frame: usize) -> Result<Self> {
        crate::plan::check_voxel_size(voxel, "the voxel size")?;
        Ok(TimeLapse { voxel, dims: None, first_frame, frames: Vec::new(), detections: 0, overlaps: Vec::new(), previous: None })
    }

    pub fn voxel_size(&self) -> [f64; 3] {
        self.voxel
    }

    /// Frames added so far.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn frames(&self) -> &[FrameMeasures] {
        &self.frames
    }

    /// Adds the next frame: its labels (0 = background) and, optionally, its intensities
    /// (same length) for the mean intensity. Every frame must have the first one's dims.
    pub fn add_frame(&mut self, labels: &[u32], dims: [usize; 3], intensity: Option<&[f32]>) -> Result<()> {
        if let Some(d) = self.dims {
            if d != dims {
                return Err(Error::invalid(format!("frame {} has dims {dims:?}, the series {d:?}", self.first_frame + self.frames.len())));
            }
        }
        if self.frames.len() >= crate::track::MAX_FRAMES {
            return Err(Error::invalid(format!("at most {} frames are tracked", crate::track::MAX_FRAMES)));
        }
        let frame = self.first_frame + self.frames.len();
        let measured = FrameMeasures::new(frame, labels, dims, self.voxel, intensity)?;
        if measured.nuclei.len() > crate::track::MAX_NUCLEI_PER_FRAME {
            return Err(Error::invalid(format!(
                "frame {frame} holds {} nuclei, at most {} are tracked",
                measured.nuclei.len(),
                crate::track::MAX_NUCLEI_PER_FRAME
            )));
        }
        let total = self.detections + measured.nuclei.len();
        if total > crate::track::MAX_DETECTIONS {
            return Err(Error::invalid(format!("more than {} nuclei over all frames are tracked", crate::track::MAX_DETECTIONS)));
        }
        if let Some(prev) = &self.previous {
            self.overlaps.push(overlaps(prev, labels)?);
        }
        self.frames.push(measured);
        self.detections = total;
        self.dims = Some(dims);
        match &mut self.previous {
            Some(p) => p.copy_from_slice(labels),
            None => self.previous = Some(labels.to_vec()),
        }
        Ok(())
    }

    /// Links the frames and derives the criteria. `interval` is the time between frames
    /// (any unit; it fills the criteria's `time` column), `None` when unknown.
    pub fn analyse(&self, params: &TrackParams, interval: Option<f64>) -> Result<Analysis> {
        if let Some(i) = interval {
            if !(i.is_finite() && i > 0.0) {
                return Err(Error::invalid(format!("the frame interval must be positive, got {i}")));
            }
        }
        let tables: Vec<FrameNuclei> = self.frames.iter().map(|f| FrameNuclei::from_measured(f.frame, &f.nuclei)).collect();
        let tracking = link(&tables, Some(&self.overlaps), params)?;
        let criteria = frame_criteria(&self.frames, Some(&tracking), interval);
        let rounds = division_rounds(&tracking);
        let mut points = Vec::new();
        for (t, f) in self.frames.iter().enumerate() {
            for (n, s) in f.nuclei.iter().zip(&f.surface_um2) {
                let track = tracking.assignment[t].get(&n.label).copied().unwrap_or(0);
                let parent = tracking.tracks.get((track as usize).wrapping_sub(1)).map_or(0, |tr| tr.parent);
                points.push(TrackPoint {
                    track,
                    frame: f.frame,
                    label: n.label,
                    centroid_um: n.centroid_um,
                    volume_um3: n.volume_um3,
                    surface_um2: *s,
                    mean_intensity: n.mean_intensity,
                    parent,
                });
            }
        }
        points.sort_by_key(|p| (p.track, p.frame));
        Ok(Analysis { tracking, criteria, rounds, points })
    }
}

impl Analysis {
    /// The tracks table as CSV: one row per nucleus per frame, by track then frame.
    pub fn tracks_csv(&self) -> String {
        let mut s =
            String::from("track,frame,label,centroid_z_um,centroid_y_um,centroid_x_um,volume_um3,surface_um2,mean_intensity,parent\n");
        for p in &self.points {
            s.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                p.track,
                p.frame,
                p.label,
                csv_number(p.centroid_um[0], 4),
                csv_number(p.centroid_um[1], 4),
                csv_number(p.centroid_um[2], 4),
                csv_number(p.volume_um3, 3),
                csv_number(p.surface_um2, 3),
                csv_number(p.mean_intensity, 4),
                p.parent
            ));
        }
        s
    }

    /// The divisions as CSV: frame the daughters appear, mother's track, daughters' tracks.
    pub fn divisions_csv(&self) -> String {
        let mut s = String::from("frame,parent,daughter_1,daughter_2\n");
        for d in self.tracking.divisions() {
            s.push_str(&format!("{},{},{},{}\n", d.frame, d.parent, d.daughters[0], d.daughters[1]));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth_series::{generate_series, SeriesParams};

    #[test]
    fn a_generated_series_is_tracked_with_its_true_divisions_and_rounds() {
        let p = SeriesParams { frames: 10, ..SeriesParams::default() };
        let series = generate_series(&p).unwrap();
        let mut tl = TimeLapse::new(series.voxel_size, 0).unwrap();
        for f in &series.frames {
            let img: Vec<f32> = f.image.iter().map(|&v| v as f32).collect();
            tl.add_frame(&f.labels, series.dims, Some(&img)).unwrap();
        }
        let a = tl.analyse(&TrackParams::default(), Some(2.0)).unwrap();
        // the ground truth's labels are its track ids: a perfect tracker maps them 1:1
        assert_eq!(a.tracking.tracks.len(), series.tracks.len());
        let truth = crate::track::divisions(&series.tracks);
        assert_eq!(a.tracking.divisions().len(), truth.len());
        let by_frame: Vec<usize> = a.criteria.iter().map(|c| c.divisions).collect();
        for d in &truth {
            assert!(by_frame[d.frame] >= 1);
        }
        assert_eq!(by_frame.iter().sum::<usize>(), truth.len());
        assert_eq!(a.rounds.len(), 2, "4 -> 8 -> 16 nuclei: {:?}", a.rounds);
        assert!(a.rounds.iter().all(|r| r.spread_frames == 0), "synchronous rounds");
        assert_eq!(a.criteria[0].nuclei, 4);
        assert_eq!(a.criteria[9].nuclei, 16);
        assert_eq!(a.criteria[3].time, Some(6.0));
        // nuclear volume halves at each round
        let v0 = a.criteria[0].volume_um3_mean;
        let v9 = a.criteria[9].volume_um3_mean;
        assert!((v9 / v0 - 0.25).abs() < 0.05, "{v0} -> {v9}");
        assert_eq!(a.points.len(), a.criteria.iter().map(|c| c.nuclei).sum::<usize>());
        assert!(a.tracks_csv().lines().count() == a.points.len() + 1);
        assert_eq!(a.divisions_csv().lines().count(), truth.len() + 1);
    }

    #[test]
    fn frames_of_other_dims_and_bad_intervals_are_refused() {
        let mut tl = TimeLapse::new([1.0; 3], 5).unwrap();
        tl.add_frame(&[0, 1, 1, 0], [1, 2, 2], None).unwrap();
        assert!(tl.add_frame(&[0, 1, 1], [1, 1, 3], None).is_err());
        assert_eq!(tl.len(), 1);
        tl.add_frame(&[0, 2, 2, 0], [1, 2, 2], None).unwrap();
        let a = tl.analyse(&TrackParams::default(), None).unwrap();
        assert_eq!(a.tracking.tracks.len(), 1);
        assert_eq!((a.tracking.tracks[0].start, a.tracking.tracks[0].end), (5, 6));
        assert!(tl.analyse(&TrackParams::default(), Some(0.0)).is_err());
        assert!(TimeLapse::new([0.0, 1.0, 1.0], 0).is_err());
    }
}
