//! The recent-gallery cascade (face specialisation) replayed over a video's faces, exactly as
//! the node serves it (`agent::serve::face_recent`): per frame, every face's cheap descriptor
//! must be within the threshold of someone in the recent gallery for the gallery to answer;
//! otherwise the fallback variant answers the frame from the gallery of identities and each
//! face's cheap descriptor is remembered with that answer (unless it sits near the line). Answers are compared with the
//! reference's, as for every variant ([`super::protocol`]). Pure arithmetic over descriptors.

use std::ops::Range;

use serde::Serialize;
use vision::face::describe::distance;
use vision::face::recent::{STRANGER_DISTANCE, confident};
use vision::face::{Descriptor, Gallery, RecentGallery, RecentLimits, Strangers};
use wire::manifest::RecentSpec;

/// The descriptors of one video's faces in frame order, per variant, and each frame's time
/// (seconds) and number of faces.
pub struct VideoFaces<'a> {
    pub frames: &'a [(f64, usize)],
    pub reference: &'a [Descriptor],
    pub fallback: &'a [Descriptor],
    pub cheap: &'a [Descriptor],
}

/// What the cascade did over the videos.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CascadeFigures {
    /// Frames with at least one face, and those the gallery answered alone.
    pub frames: usize,
    pub hit_frames: usize,
    pub faces: usize,
    pub agreeing: usize,
    pub hit_faces: usize,
    pub hit_agreeing: usize,
    /// Cheap-descriptor distance from each face to the nearest earlier face of the same
    /// reference identity, and of another one (the threshold's calibration), sorted.
    pub same: Vec<f32>,
    pub other: Vec<f32>,
}

impl CascadeFigures {
    /// Percent of frames with faces that the gallery answered.
    pub fn hit_rate(&self) -> f64 {
        percent(self.hit_frames, self.frames)
    }

    /// Percent of the gallery's face answers equal to the reference's.
    pub fn hit_accuracy(&self) -> f64 {
        percent(self.hit_agreeing, self.hit_faces)
    }

    /// Percent of all faces answered as the reference answers them.
    pub fn agreement(&self) -> f64 {
        percent(self.agreeing, self.faces)
    }

    /// Replays one video; `gallery` holds the identities the reference found in it.
    pub fn add(&mut self, video: &VideoFaces<'_>, gallery: &Gallery, spec: &RecentSpec) {
        let mut recent = RecentGallery::new(RecentLimits {
            identities: spec.identities,
            threshold: spec.threshold,
            window_s: spec.window_s,
        });
        let mut strangers = Strangers::new(STRANGER_DISTANCE, spec.window_s);
        let truth: Vec<Option<usize>> = (video.reference.iter())
            .map(|d| gallery.best(d).entry)
            .collect();
        let mut first = 0;
        for &(now_s, n) in video.frames {
            let faces = first..first + n;
            first += n;
            if n == 0 {
                continue;
            }
            self.frames += 1;
            self.calibrate(video, &truth, faces.clone());
            let hits: Option<Vec<Option<usize>>> = faces
                .clone()
                .map(|i| recent.lookup(now_s, &video.cheap[i]).map(|h| *h.label))
                .collect();
            let hit = hits.is_some();
            let answers = hits.unwrap_or_else(|| {
                (faces.clone())
                    .map(|i| {
                        let found = gallery.best(&video.fallback[i]);
                        let key = match found.entry {
                            Some(e) => gallery.name(e).unwrap_or_default().to_string(),
                            None => strangers.key(now_s, &video.fallback[i]),
                        };
                        if confident(found.distance, gallery.threshold) {
                            recent.remember(now_s, &key, found.entry, video.cheap[i].clone());
                        }
                        found.entry
                    })
                    .collect()
            });
            let agreeing = (answers.iter().zip(&truth[faces]))
                .filter(|(a, t)| a == t)
                .count();
            if hit {
                self.hit_frames += 1;
                self.hit_faces += n;
                self.hit_agreeing += agreeing;
            }
            self.faces += n;
            self.agreeing += agreeing;
        }
        self.same.sort_by(f32::total_cmp);
        self.other.sort_by(f32::total_cmp);
    }

    /// For each face of a frame, the cheap-space distance to the nearest face of earlier frames
    /// with the same reference answer, and with another; faces the reference leaves unknown
    /// are skipped.
    fn calibrate(&mut self, video: &VideoFaces<'_>, truth: &[Option<usize>], faces: Range<usize>) {
        for i in faces.clone() {
            let Some(me) = truth[i] else { continue };
            let (mut same, mut other) = (f32::INFINITY, f32::INFINITY);
            for j in (0..faces.start).filter(|&j| truth[j].is_some()) {
                let d = distance(&video.cheap[i], &video.cheap[j]);
                if truth[j] == Some(me) {
                    same = same.min(d);
                } else {
                    other = other.min(d);
                }
            }
            self.same.extend(Some(same).filter(|d| d.is_finite()));
            self.other.extend(Some(other).filter(|d| d.is_finite()));
        }
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        return 100.0;
    }
    100.0 * part as f64 / whole as f64
}

#[cfg(test)]
mod tests {
    use super::super::test_descriptor as at;
    use super::*;

    #[test]
    fn a_person_seen_again_is_answered_by_the_gallery_and_checked_against_the_reference() {
        let mut gallery = Gallery::new(0.6);
        gallery.add("ann", at(0.0));
        // Ann in four frames, then a stranger; the fallback misnames nobody, the cheap network
        // sees ann's later frames close to her first.
        let reference = [at(0.0), at(0.1), at(0.0), at(0.1), at(5.0)];
        let cheap = [at(10.0), at(10.1), at(10.05), at(10.0), at(20.0)];
        let video = VideoFaces {
            frames: &[(0.0, 1), (0.1, 1), (0.2, 0), (0.3, 1), (0.4, 1), (0.5, 1)],
            reference: &reference,
            fallback: &reference,
            cheap: &cheap,
        };
        let spec = RecentSpec {
            identities: 4,
            threshold: 0.3,
            window_s: 60.0,
            hit_accuracy: 0.0,
            hit_rate: 0.0,
        };
        let mut f = CascadeFigures::default();
        f.add(&video, &gallery, &spec);
        assert_eq!(
            (f.frames, f.hit_frames),
            (5, 3),
            "ann hits after her first frame"
        );
        assert_eq!(
            (f.faces, f.agreeing, f.hit_faces, f.hit_agreeing),
            (5, 5, 3, 3)
        );
        assert_eq!(f.hit_rate(), 60.0);
        assert_eq!(f.hit_accuracy(), 100.0);
        assert!(f.same.iter().all(|&d| d <= 0.11), "{:?}", f.same);
        assert!(f.other.is_empty(), "the stranger has no reference identity");
    }
}
