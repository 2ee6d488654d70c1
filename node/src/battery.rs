//! Battery telemetry: the real battery from `/sys/class/power_supply` where there is one,
//! otherwise a battery model (capacity, shift end) drained by the profiled energy of every
//! inference, so a laptop or a container can act as a body camera.
//!
//! Scheduling budgets use the energy the vision apps spent (profiled per inference) against the
//! shift's energy budget in both cases; the sysfs reading is reported alongside so an operator
//! sees the real battery.

use std::path::{Path, PathBuf};

use wire::msg::{Battery, BatterySource};

/// Where battery figures come from.
#[derive(Debug, Clone)]
pub enum Sensor {
    Sysfs(PathBuf),
    Model,
}

/// The apps' energy budget for the shift and what they spent of it.
#[derive(Debug, Clone)]
pub struct EnergyAccount {
    pub capacity_j: f64,
    pub budget_j: f64,
    pub used_j: f64,
    pub shift_end_unix_ms: u64,
    sensor: Sensor,
    /// (unix ms, used_j) of the previous drain sample, for the drain rate.
    last_sample: Option<(u64, f64)>,
    drain_w: f64,
}

impl EnergyAccount {
    /// `prefer_sysfs`: read the real battery when the machine has one.
    pub fn new(capacity_j: f64, budget_j: f64, shift_end_unix_ms: u64, prefer_sysfs: bool) -> Self {
        let sensor = if prefer_sysfs {
            find_sysfs_battery(Path::new("/sys/class/power_supply"))
                .map_or(Sensor::Model, Sensor::Sysfs)
        } else {
            Sensor::Model
        };
        Self {
            capacity_j,
            budget_j: budget_j.min(capacity_j),
            used_j: 0.0,
            shift_end_unix_ms,
            sensor,
            last_sample: None,
            drain_w: 0.0,
        }
    }

    /// Charges energy spent by an inference, a model load or a radio transfer.
    pub fn charge(&mut self, joules: f64) {
        self.used_j += joules.max(0.0);
    }

    pub fn left_j(&self) -> f64 {
        (self.budget_j - self.used_j).max(0.0)
    }

    /// The telemetry view; updates the drain estimate from the previous call.
    pub fn reading(&mut self, now_unix_ms: u64) -> Battery {
        if let Some((t, used)) = self.last_sample
            && now_unix_ms > t
        {
            self.drain_w = (self.used_j - used) / ((now_unix_ms - t) as f64 / 1000.0);
        }
        self.last_sample = Some((now_unix_ms, self.used_j));
        let (capacity_j, energy_left_j, source) = match &self.sensor {
            Sensor::Sysfs(dir) => match read_sysfs(dir) {
                Some((full, now)) => (full, now, BatterySource::Sysfs),
                None => (self.budget_j, self.left_j(), BatterySource::Model),
            },
            // The modelled battery is what the apps may spend this shift: the coordinator plans
            // on energy left until the shift ends, so capacity is the shift's budget.
            Sensor::Model => (self.budget_j, self.left_j(), BatterySource::Model),
        };
        Battery {
            capacity_j,
            energy_left_j,
            drain_w: self.drain_w,
            shift_end_unix_ms: self.shift_end_unix_ms,
            source,
        }
    }
}

/// The first power supply whose `type` is `Battery` and that reports energy.
pub fn find_sysfs_battery(root: &Path) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries.into_iter().find(|dir| {
        std::fs::read_to_string(dir.join("type")).is_ok_and(|t| t.trim() == "Battery")
            && read_sysfs(dir).is_some()
    })
}

/// (full, now) in joules from `energy_full`/`energy_now` (µWh), or from `charge_*` (µAh) times
/// `voltage_now` (µV).
fn read_sysfs(dir: &Path) -> Option<(f64, f64)> {
    let read = |name: &str| -> Option<f64> {
        std::fs::read_to_string(dir.join(name))
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
    };
    const UWH_TO_J: f64 = 3600.0 / 1e6;
    if let (Some(full), Some(now)) = (read("energy_full"), read("energy_now")) {
        return Some((full * UWH_TO_J, now * UWH_TO_J));
    }
    let volts = read("voltage_now")? / 1e6;
    let (full, now) = (read("charge_full")?, read("charge_now")?);
    Some((full * volts * UWH_TO_J, now * volts * UWH_TO_J))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_battery_drains_by_what_is_charged() {
        let mut e = EnergyAccount::new(100.0, 40.0, 0, false);
        e.charge(10.0);
        e.charge(-5.0); // never negative
        assert_eq!(e.left_j(), 30.0);
        let r = e.reading(1000);
        assert_eq!((r.capacity_j, r.energy_left_j), (40.0, 30.0));
        assert_eq!(r.source, BatterySource::Model);
        e.charge(2.0);
        let r = e.reading(3000);
        assert!((r.drain_w - 1.0).abs() < 1e-9);
    }

    #[test]
    fn sysfs_battery_is_read_in_joules() {
        let root = std::env::temp_dir().join(format!("mcdnn-psu-{}", std::process::id()));
        let bat = root.join("BAT0");
        std::fs::create_dir_all(&bat).expect("dir");
        std::fs::create_dir_all(root.join("AC")).expect("dir");
        std::fs::write(root.join("AC/type"), "Mains\n").expect("w");
        std::fs::write(bat.join("type"), "Battery\n").expect("w");
        std::fs::write(bat.join("energy_full"), "50000000\n").expect("w"); // 50 Wh
        std::fs::write(bat.join("energy_now"), "25000000\n").expect("w");
        assert_eq!(find_sysfs_battery(&root), Some(bat.clone()));
        let (full, now) = read_sysfs(&bat).expect("reading");
        assert!((full - 180_000.0).abs() < 1e-6 && (now - 90_000.0).abs() < 1e-6);
        std::fs::remove_dir_all(&root).ok();
    }
}
