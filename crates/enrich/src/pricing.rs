//! Exact cost from a price table (SPEC.md section 4).
//!
//! Money is `rust_decimal::Decimal` end to end: prices are parsed from decimal
//! strings, never through a binary float, and every product is exact.

use rust_decimal::Decimal;
use rustc_hash::FxHashMap as HashMap;
use serde::Deserialize;

/// The built-in price table (`data/prices.toml`).
pub const DEFAULT_PRICES_TOML: &str = include_str!("../data/prices.toml");

/// Why a price table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PriceTableError {
    /// Not valid TOML, or fields of the wrong type.
    #[error("invalid price table: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value that must be a decimal is not.
    #[error("invalid price table: {field} of {family}: {value:?} is not a decimal number")]
    Decimal {
        /// Model family of the entry.
        family: String,
        /// Field name.
        field: &'static str,
        /// The offending text.
        value: String,
    },
    /// A date that is not `YYYY-MM-DD`.
    #[error("invalid price table: effective_from of {family}: {value:?} is not a YYYY-MM-DD date")]
    Date {
        /// Model family of the entry.
        family: String,
        /// The offending text.
        value: String,
    },
}

/// A decimal written in TOML as a string, an integer or a float literal.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DecimalText {
    Text(String),
    Int(i64),
    Float(f64),
}

impl DecimalText {
    fn parse(&self, family: &str, field: &'static str) -> Result<Decimal, PriceTableError> {
        let text = match self {
            DecimalText::Text(s) => s.trim().to_owned(),
            DecimalText::Int(i) => i.to_string(),
            // A TOML float's shortest round-trip spelling is the literal the user wrote.
            DecimalText::Float(f) => f.to_string(),
        };
        text.parse::<Decimal>()
            .ok()
            .filter(|d| !d.is_sign_negative())
            .ok_or(PriceTableError::Decimal {
                family: family.to_owned(),
                field,
                value: text,
            })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    #[allow(dead_code)]
    version: Option<u32>,
    multipliers: FileMultipliers,
    #[serde(default, rename = "model")]
    models: Vec<FileModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMultipliers {
    cache_write_5m: DecimalText,
    cache_write_1h: DecimalText,
    cache_read: DecimalText,
    batch: DecimalText,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    family: String,
    effective_from: String,
    input: DecimalText,
    output: DecimalText,
    long_context: Option<FileLongContext>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLongContext {
    threshold_tokens: u64,
    input: DecimalText,
    output: DecimalText,
}

/// Prices of one model family from one date on (USD per million tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// Days since 1970-01-01 (UTC) from which this entry applies.
    pub effective_from_day: i64,
    /// Input price.
    pub input: Decimal,
    /// Output price.
    pub output: Decimal,
    /// Long-context pricing, when the model has it.
    pub long_context: Option<LongContext>,
}

/// Long-context rates for requests whose input exceeds a threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongContext {
    /// Input tokens (uncached + cache read + cache write) above which the rates apply.
    pub threshold_tokens: u64,
    /// Input price above the threshold.
    pub input: Decimal,
    /// Output price above the threshold.
    pub output: Decimal,
}

/// Price multipliers shared by all models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipliers {
    /// Cache write with 5-minute TTL, times the input price.
    pub cache_write_5m: Decimal,
    /// Cache write with 1-hour TTL, times the input price.
    pub cache_write_1h: Decimal,
    /// Cache read, times the input price.
    pub cache_read: Decimal,
    /// Message Batches, times the whole cost.
    pub batch: Decimal,
}

/// The price table: per family, entries sorted by effective date.
#[derive(Debug, Clone)]
pub struct PriceTable {
    multipliers: Multipliers,
    models: HashMap<String, Vec<Priced>>,
}

/// A price entry with its rates as integers, for the integer cost path.
#[derive(Debug, Clone)]
struct Priced {
    price: ModelPrice,
    rates: Option<Rates>,
    long_context_rates: Option<Rates>,
}

/// Decimal places of a [`Rates`] unit: 10^-9 USD per million tokens.
const RATE_SCALE: u32 = 9;

/// One price's five rates per million tokens (the cache ones multiplied
/// out), each an exact integer number of 10^-9 USD. A price with a rate not
/// exact at that scale (more decimals) has none and takes the decimal path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rates {
    input: u64,
    write_5m: u64,
    write_1h: u64,
    read: u64,
    output: u64,
}

impl Rates {
    /// The rates of `input` and `output`, each rate being the very decimal
    /// the decimal path multiplies tokens by.
    fn of(input: Decimal, output: Decimal, m: &Multipliers) -> Option<Rates> {
        Some(Rates {
            input: units(input)?,
            write_5m: units(input * m.cache_write_5m)?,
            write_1h: units(input * m.cache_write_1h)?,
            read: units(input * m.cache_read)?,
            output: units(output)?,
        })
    }

    /// Sum of tokens times rate, in 10^-(9+6) USD; `None` on overflow.
    fn total(
        &self,
        input: u64,
        write_5m: u64,
        write_1h: u64,
        read: u64,
        output: u64,
    ) -> Option<u128> {
        let term = |n: u64, rate: u64| u128::from(n).checked_mul(u128::from(rate));
        term(input, self.input)?
            .checked_add(term(write_5m, self.write_5m)?)?
            .checked_add(term(write_1h, self.write_1h)?)?
            .checked_add(term(read, self.read)?)?
            .checked_add(term(output, self.output)?)
    }
}

/// `d` as an integer number of 10^-9, if exact and in range.
fn units(d: Decimal) -> Option<u64> {
    let d = d.normalize();
    if d.is_sign_negative() || d.scale() > RATE_SCALE {
        return None;
    }
    let scaled = d
        .mantissa()
        .checked_mul(10i128.checked_pow(RATE_SCALE - d.scale())?)?;
    u64::try_from(scaled).ok()
}

/// `total` 10^-`scale` USD as the normalized decimal (no trailing zeros),
/// what the decimal path's `normalize` gives; `None` past Decimal's range.
fn normalized(mut total: u128, mut scale: u32) -> Option<Decimal> {
    if total == 0 {
        return Some(Decimal::ZERO);
    }
    // In 64 bits when it fits (nearly always): a division by 10 is then a
    // multiplication, where a 128-bit one is a library call.
    if let Ok(mut small) = u64::try_from(total) {
        while scale > 0 && small.is_multiple_of(10) {
            small /= 10;
            scale -= 1;
        }
        total = u128::from(small);
    }
    while scale > 0 && total.is_multiple_of(10) {
        total /= 10;
        scale -= 1;
    }
    // Decimal's mantissa is 96 bits.
    if total >= 1u128 << 96 {
        return None;
    }
    Decimal::try_from_i128_with_scale(total as i128, scale).ok()
}

/// Token counts of one call, as the API means them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillableTokens {
    /// Uncached input.
    pub input: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Cache writes, all TTLs.
    pub cache_write: u64,
    /// The 1-hour part of `cache_write`.
    pub cache_write_1h: u64,
    /// Output.
    pub output: u64,
}

impl PriceTable {
    /// The built-in table.
    pub fn default_table() -> PriceTable {
        // The embedded file is tested to parse; failing here is a build defect.
        #[allow(clippy::expect_used)]
        PriceTable::from_toml(DEFAULT_PRICES_TOML).expect("built-in price table parses")
    }

    /// Parses a table from TOML text (the format of `data/prices.toml`).
    pub fn from_toml(text: &str) -> Result<PriceTable, PriceTableError> {
        let file: FileTable = toml::from_str(text)?;
        let m = &file.multipliers;
        let multipliers = Multipliers {
            cache_write_5m: m.cache_write_5m.parse("multipliers", "cache_write_5m")?,
            cache_write_1h: m.cache_write_1h.parse("multipliers", "cache_write_1h")?,
            cache_read: m.cache_read.parse("multipliers", "cache_read")?,
            batch: m.batch.parse("multipliers", "batch")?,
        };
        let mut models: HashMap<String, Vec<Priced>> = HashMap::default();
        for entry in file.models {
            let family = entry.family.trim().to_ascii_lowercase();
            let day = parse_date(&entry.effective_from).ok_or_else(|| PriceTableError::Date {
                family: family.clone(),
                value: entry.effective_from.clone(),
            })?;
            let long_context = match &entry.long_context {
                None => None,
                Some(lc) => Some(LongContext {
                    threshold_tokens: lc.threshold_tokens,
                    input: lc.input.parse(&family, "long_context.input")?,
                    output: lc.output.parse(&family, "long_context.output")?,
                }),
            };
            let price = ModelPrice {
                effective_from_day: day,
                input: entry.input.parse(&family, "input")?,
                output: entry.output.parse(&family, "output")?,
                long_context,
            };
            let rates = Rates::of(price.input, price.output, &multipliers);
            let long_context_rates = price
                .long_context
                .as_ref()
                .and_then(|lc| Rates::of(lc.input, lc.output, &multipliers));
            models.entry(family).or_default().push(Priced {
                price,
                rates,
                long_context_rates,
            });
        }
        for list in models.values_mut() {
            list.sort_by_key(|p| p.price.effective_from_day);
        }
        Ok(PriceTable {
            multipliers,
            models,
        })
    }

    /// The shared multipliers.
    pub fn multipliers(&self) -> &Multipliers {
        &self.multipliers
    }

    /// The price of `family` in force at `time_unix_nano` (0 = now: the newest
    /// entry). A call dated before the first entry uses the first entry.
    pub fn price(&self, family: &str, time_unix_nano: u64) -> Option<&ModelPrice> {
        self.priced(family, time_unix_nano).map(|p| &p.price)
    }

    fn priced(&self, family: &str, time_unix_nano: u64) -> Option<&Priced> {
        let list = self.models.get(family)?;
        if time_unix_nano == 0 {
            return list.last();
        }
        let day = (time_unix_nano / 86_400_000_000_000) as i64;
        list.iter()
            .rev()
            .find(|p| p.price.effective_from_day <= day)
            .or_else(|| list.first())
    }

    /// Exact cost of a call in USD, or `None` when the family has no price.
    ///
    /// Prices whose rates are exact at 10^-9 USD per million tokens (every
    /// real one) are summed in integers; the rest, and batch calls, take the
    /// decimal path. Both give the same normalized decimal.
    pub fn cost(
        &self,
        family: &str,
        time_unix_nano: u64,
        tokens: BillableTokens,
        batch: bool,
    ) -> Option<Decimal> {
        let priced = self.priced(family, time_unix_nano)?;
        if !batch {
            if let Some(usd) = integer_cost(priced, tokens) {
                return Some(usd);
            }
        }
        Some(self.decimal_cost(&priced.price, tokens, batch))
    }

    /// [`PriceTable::cost`] in decimals.
    fn decimal_cost(&self, price: &ModelPrice, tokens: BillableTokens, batch: bool) -> Decimal {
        let m = &self.multipliers;
        let (long, write_5m, write_1h) = long_context_and_writes(price, &tokens);
        let (input_price, output_price) = match &price.long_context {
            Some(lc) if long => (lc.input, lc.output),
            _ => (price.input, price.output),
        };
        // Zero terms are skipped: most calls have no cache activity.
        let term = |n: u64, price: Decimal| {
            if n == 0 {
                Decimal::ZERO
            } else {
                Decimal::from(n) * price
            }
        };
        let micro_usd_times_mtok = term(tokens.input, input_price)
            + term(write_5m, input_price * m.cache_write_5m)
            + term(write_1h, input_price * m.cache_write_1h)
            + term(tokens.cache_read, input_price * m.cache_read)
            + term(tokens.output, output_price);
        // Dividing by 10^6 is moving the decimal point: exact, and far cheaper
        // than a decimal division (which stays for the rare scale overflow).
        let mut usd = micro_usd_times_mtok;
        if usd.set_scale(usd.scale() + 6).is_err() {
            usd = micro_usd_times_mtok / Decimal::from(1_000_000u32);
        }
        if batch {
            usd *= m.batch;
        }
        usd.normalize()
    }
}

/// What a call's tokens are priced as: (whether the long-context rates
/// apply, 5-minute cache writes, 1-hour cache writes).
fn long_context_and_writes(price: &ModelPrice, tokens: &BillableTokens) -> (bool, u64, u64) {
    let total_input = tokens
        .input
        .saturating_add(tokens.cache_read)
        .saturating_add(tokens.cache_write);
    let long = price
        .long_context
        .as_ref()
        .is_some_and(|lc| total_input > lc.threshold_tokens);
    let write_1h = tokens.cache_write_1h.min(tokens.cache_write);
    (long, tokens.cache_write - write_1h, write_1h)
}

/// The cost in integers, when the price has integer rates and the sum fits.
fn integer_cost(priced: &Priced, tokens: BillableTokens) -> Option<Decimal> {
    let (long, write_5m, write_1h) = long_context_and_writes(&priced.price, &tokens);
    let rates = if long {
        priced.long_context_rates?
    } else {
        priced.rates?
    };
    let total = rates.total(
        tokens.input,
        write_5m,
        write_1h,
        tokens.cache_read,
        tokens.output,
    )?;
    normalized(total, RATE_SCALE + 6)
}

/// `YYYY-MM-DD` to days since 1970-01-01.
fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn cost(family: &str, t: BillableTokens) -> Decimal {
        PriceTable::default_table()
            .cost(family, 0, t, false)
            .unwrap()
    }

    #[test]
    fn default_table_parses_and_has_spec_prices() {
        let t = PriceTable::default_table();
        for (family, input, output) in [
            ("claude-opus-4-5", "5", "25"),
            ("claude-opus-4-1", "15", "75"),
            ("claude-opus-4", "15", "75"),
            ("claude-sonnet-4-5", "3", "15"),
            ("claude-sonnet-4", "3", "15"),
            ("claude-3-7-sonnet", "3", "15"),
            ("claude-haiku-4-5", "1", "5"),
            ("claude-3-5-haiku", "0.80", "4"),
            ("claude-3-haiku", "0.25", "1.25"),
        ] {
            let p = t.price(family, 0).unwrap();
            assert_eq!((p.input, p.output), (dec(input), dec(output)), "{family}");
        }
    }

    #[test]
    fn plain_input_and_output() {
        let c = cost(
            "claude-sonnet-4-5",
            BillableTokens {
                input: 1200,
                output: 85,
                ..Default::default()
            },
        );
        assert_eq!(c, dec("0.004875"));
    }

    #[test]
    fn cache_reads_and_5m_writes() {
        // SPEC cache_opus: 310 in, 4096 read, 1024 write, 120 out on opus 4.1.
        let c = cost(
            "claude-opus-4-1",
            BillableTokens {
                input: 310,
                cache_read: 4096,
                cache_write: 1024,
                output: 120,
                ..Default::default()
            },
        );
        assert_eq!(c, dec("0.038994"));
    }

    #[test]
    fn one_hour_writes_cost_twice_input() {
        let c = cost(
            "claude-sonnet-4-5",
            BillableTokens {
                cache_write: 1000,
                cache_write_1h: 1000,
                ..Default::default()
            },
        );
        assert_eq!(c, dec("0.006"));
        let mixed = cost(
            "claude-sonnet-4-5",
            BillableTokens {
                cache_write: 1000,
                cache_write_1h: 400,
                ..Default::default()
            },
        );
        // 600 * 3.75 + 400 * 6 = 2250 + 2400 = 4650 micro-USD
        assert_eq!(mixed, dec("0.00465"));
    }

    #[test]
    fn long_context_applies_to_all_tokens_above_threshold() {
        let at = cost(
            "claude-sonnet-4-5",
            BillableTokens {
                input: 200_000,
                output: 1000,
                ..Default::default()
            },
        );
        assert_eq!(at, dec("0.615")); // 200k * 3 + 1000 * 15, not above
        let above = cost(
            "claude-sonnet-4-5",
            BillableTokens {
                input: 150_000,
                cache_read: 50_001,
                output: 1000,
                ..Default::default()
            },
        );
        // 150000*6 + 50001*0.6 + 1000*22.5 = 900000 + 30000.6 + 22500
        assert_eq!(above, dec("0.9525006"));
        // Haiku has no long-context rate.
        let haiku = cost(
            "claude-haiku-4-5",
            BillableTokens {
                input: 300_000,
                ..Default::default()
            },
        );
        assert_eq!(haiku, dec("0.3"));
    }

    #[test]
    fn batch_halves_the_cost() {
        let t = PriceTable::default_table();
        let c = t.cost(
            "claude-sonnet-4-5",
            0,
            BillableTokens {
                input: 1200,
                output: 85,
                ..Default::default()
            },
            true,
        );
        assert_eq!(c, Some(dec("0.0024375")));
    }

    #[test]
    fn unknown_family_is_unpriced() {
        assert_eq!(
            PriceTable::default_table().cost(
                "claude-9-mystery",
                0,
                BillableTokens::default(),
                false
            ),
            None
        );
    }

    /// A table of `models` (TOML) with the usual multipliers.
    fn with_multipliers(models: &str) -> PriceTable {
        let multipliers = r#"
            [multipliers]
            cache_write_5m = "1.25"
            cache_write_1h = 2
            cache_read = 0.1
            batch = "0.5"
            "#;
        PriceTable::from_toml(&format!("{models}\n{multipliers}")).unwrap()
    }

    #[test]
    fn effective_dates_keep_history() {
        let t = with_multipliers(
            r#"
            [[model]]
            family = "claude-x-1"
            effective_from = "2025-01-01"
            input = "3"
            output = "15"
            [[model]]
            family = "claude-x-1"
            effective_from = "2026-01-01"
            input = "1"
            output = "5"
            "#,
        );
        let day =
            |y, m, d| (days_from_civil(y, m, d) as u64) * 86_400_000_000_000 + 3_600_000_000_000;
        let tok = BillableTokens {
            input: 1_000_000,
            ..Default::default()
        };
        assert_eq!(
            t.cost("claude-x-1", day(2025, 6, 1), tok, false),
            Some(dec("3"))
        );
        assert_eq!(
            t.cost("claude-x-1", day(2026, 1, 1), tok, false),
            Some(dec("1"))
        );
        assert_eq!(
            t.cost("claude-x-1", day(2024, 1, 1), tok, false),
            Some(dec("3"))
        );
        assert_eq!(t.multipliers().cache_read, dec("0.1"));
    }

    #[test]
    fn a_price_with_many_decimals_still_divides_exactly() {
        // 23 decimals: moving the point six places would pass Decimal's 28.
        let t = with_multipliers(
            r#"model = [{ family = "claude-x-1", effective_from = "2025-01-01", input = "0.00000000000000000000003", output = "1.5" }]"#,
        );
        let tok = BillableTokens {
            input: 1_000_000,
            output: 2,
            ..Default::default()
        };
        assert_eq!(
            t.cost("claude-x-1", 0, tok, false),
            Some(dec("0.00000300000000000000003"))
        );
        assert_eq!(
            t.cost("claude-x-1", 0, tok, true),
            Some(dec("0.000001500000000000000015"))
        );
    }

    #[test]
    fn bad_tables_are_rejected_with_the_reason() {
        let err = PriceTable::from_toml(
            "[multipliers]\ncache_write_5m='x'\ncache_write_1h=2\ncache_read=1\nbatch=1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("cache_write_5m"), "{err}");
        let err = PriceTable::from_toml(
            "[multipliers]\ncache_write_5m=1\ncache_write_1h=2\ncache_read=1\nbatch=1\nbogus=1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 11, 23), 20_780);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn every_built_in_price_has_integer_rates() {
        let t = PriceTable::default_table();
        for (family, list) in &t.models {
            for p in list {
                assert!(p.rates.is_some(), "{family}");
                assert_eq!(
                    p.price.long_context.is_some(),
                    p.long_context_rates.is_some(),
                    "{family}"
                );
            }
        }
        let sonnet = t.priced("claude-sonnet-4-5", 0).unwrap().rates.unwrap();
        // $3 and $15 per million; writes 1.25x and 2x; reads 0.1x.
        assert_eq!(
            (
                sonnet.input,
                sonnet.write_5m,
                sonnet.write_1h,
                sonnet.read,
                sonnet.output
            ),
            (
                3_000_000_000,
                3_750_000_000,
                6_000_000_000,
                300_000_000,
                15_000_000_000
            )
        );
    }

    #[test]
    fn a_rate_with_more_than_nine_decimals_takes_the_decimal_path() {
        let t = with_multipliers(
            r#"model = [{ family = "claude-x-1", effective_from = "2025-01-01", input = "0.0000000003", output = "1" }]"#,
        );
        assert!(t.priced("claude-x-1", 0).unwrap().rates.is_none());
        let tok = BillableTokens {
            input: 10,
            output: 1,
            ..Default::default()
        };
        assert_eq!(
            t.cost("claude-x-1", 0, tok, false),
            Some(dec("0.000001000000003"))
        );
    }

    proptest::proptest! {
        #[test]
        fn the_integer_path_equals_the_decimal_path(
            family in proptest::sample::select(vec!["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "claude-3-5-haiku", "claude-sonnet-4"]),
            input in 0u64..400_000, output in 0u64..200_000, read in 0u64..300_000,
            write in 0u64..100_000, write_1h in 0u64..150_000,
        ) {
            let t = PriceTable::default_table();
            let tokens = BillableTokens { input, output, cache_read: read, cache_write: write, cache_write_1h: write_1h };
            if let Some(priced) = t.priced(family, 0) {
                let fast = integer_cost(priced, tokens).unwrap();
                let slow = t.decimal_cost(&priced.price, tokens, false);
                proptest::prop_assert_eq!(fast, slow);
                proptest::prop_assert_eq!(fast.to_string(), slow.to_string());
            }
        }

        #[test]
        fn cost_is_additive_and_exact(input in 0u64..5_000_000, out in 0u64..1_000_000, read in 0u64..1_000_000) {
            let t = PriceTable::default_table();
            let parts = |b: BillableTokens| t.cost("claude-haiku-4-5", 0, b, false).unwrap();
            let whole = parts(BillableTokens { input, output: out, cache_read: read, ..Default::default() });
            let sum = parts(BillableTokens { input, ..Default::default() })
                + parts(BillableTokens { output: out, ..Default::default() })
                + parts(BillableTokens { cache_read: read, ..Default::default() });
            proptest::prop_assert_eq!(whole, sum);
            // 1 input token of haiku is exactly 1e-6 USD.
            proptest::prop_assert_eq!(parts(BillableTokens { input, ..Default::default() }), Decimal::from(input) / Decimal::from(1_000_000));
        }
    }
}
