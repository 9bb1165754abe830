//! Calendar arithmetic without a date-time dependency: SigV4 dates and the
//! timestamps `roomcast dev` puts in API Gateway events both need only this.

/// Epoch seconds to UTC (year, month, day, hour, minute, second), after Howard
/// Hinnant's `civil_from_days`.
pub fn civil(epoch_secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = epoch_secs / 86_400;
    let rem = epoch_secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_440_938_160), (2015, 8, 30, 12, 36, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
    }
}
