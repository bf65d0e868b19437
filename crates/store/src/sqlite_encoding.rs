//! How the SQLite store packs values of job and version rows into fewer bytes: ids as their 12 bytes, a one-time
//! schedule as its millisecond, code as a number in the `codes` table (found again by a content hash).
//!
//! Every packing is exact: a value that does not fit the compact form is stored as before (text or JSON), so
//! unpacking always gives back the value that was written.

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSqlError, ToSql, ToSqlOutput, Value, ValueRef};
use sundial_core::Schedule;

/// Hex digits after the `_` of an id made by [`crate::new_id`].
const ID_HEX_DIGITS: usize = 24;

/// An id bound as an SQL parameter of a column of `prefix` ids (`job`, `ver`): an id like `new_id` makes
/// (`<prefix>_` and 24 lowercase hex digits) is stored as its 12 bytes, any other id as its text.
///
/// Packed ids sort as their text does (the hex digits are fixed-width and big-endian), so `ORDER BY id` and `id > ?`
/// page through ids as before. An id of another form (none is made today) sorts before every packed id, since SQLite
/// orders text before bytes; a listing still pages through every id once.
pub(crate) struct PackedId<'a> {
    prefix: &'static str,
    id: &'a str,
}

/// Packs a `job_…` id.
pub(crate) fn pack_job_id(id: &str) -> PackedId<'_> {
    PackedId { prefix: "job", id }
}

/// Packs a `ver_…` id.
pub(crate) fn pack_version_id(id: &str) -> PackedId<'_> {
    PackedId { prefix: "ver", id }
}

impl PackedId<'_> {
    /// Whether the id is stored as bytes (it has the form `new_id` makes).
    pub(crate) fn is_packed(&self) -> bool {
        self.bytes().is_some()
    }

    fn bytes(&self) -> Option<[u8; ID_HEX_DIGITS / 2]> {
        let digits = self.id.strip_prefix(self.prefix)?.strip_prefix('_')?.as_bytes();
        if digits.len() != ID_HEX_DIGITS {
            return None;
        }
        let mut bytes = [0u8; ID_HEX_DIGITS / 2];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (lower_hex_value(pair[0])? << 4) | lower_hex_value(pair[1])?;
        }
        Some(bytes)
    }
}

impl ToSql for PackedId<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.bytes() {
            Some(bytes) => ToSqlOutput::Owned(Value::Blob(bytes.to_vec())),
            None => ToSqlOutput::Borrowed(ValueRef::Text(self.id.as_bytes())),
        })
    }
}

fn lower_hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// The id stored in a column of `prefix` ids (see [`PackedId`]).
pub(crate) fn unpack_id(prefix: &str, value: ValueRef<'_>) -> rusqlite::types::FromSqlResult<String> {
    match value {
        ValueRef::Blob(bytes) if bytes.len() == ID_HEX_DIGITS / 2 => {
            let mut id = String::with_capacity(prefix.len() + 1 + ID_HEX_DIGITS);
            id.push_str(prefix);
            id.push('_');
            for byte in bytes {
                id.push(char::from(HEX[usize::from(byte >> 4)]));
                id.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
            Ok(id)
        }
        ValueRef::Text(text) => String::from_utf8(text.to_vec()).map_err(|error| FromSqlError::Other(Box::new(error))),
        _ => Err(FromSqlError::InvalidType),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Reads column `index` of `row` as an id of `prefix` ids.
pub(crate) fn get_id(row: &rusqlite::Row<'_>, index: usize, prefix: &str) -> rusqlite::Result<String> {
    unpack_id(prefix, row.get_ref(index)?).map_err(|error| from_sql_error(index, error))
}

/// Reads column `index` of `row` as an optional id of `prefix` ids.
pub(crate) fn get_optional_id(row: &rusqlite::Row<'_>, index: usize, prefix: &str) -> rusqlite::Result<Option<String>> {
    match row.get_ref(index)? {
        ValueRef::Null => Ok(None),
        value => unpack_id(prefix, value).map(Some).map_err(|error| from_sql_error(index, error)),
    }
}

fn from_sql_error(index: usize, error: FromSqlError) -> rusqlite::Error {
    match error {
        FromSqlError::InvalidType => {
            rusqlite::Error::InvalidColumnType(index, "id".into(), rusqlite::types::Type::Null)
        }
        other => rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Blob, Box::new(other)),
    }
}

/// A schedule as stored: a one-time schedule at a whole millisecond as that Unix millisecond (an integer), any
/// other schedule as its JSON text.
pub(crate) fn pack_schedule(schedule: &Schedule) -> Value {
    if let Schedule::Once { execute_at, timezone: None } = schedule {
        if execute_at.timestamp_subsec_nanos() % 1_000_000 == 0 {
            return Value::Integer(execute_at.timestamp_millis());
        }
    }
    Value::Text(serde_json::to_string(schedule).unwrap_or_else(|_| "null".into()))
}

/// The schedule stored in column `index` of `row` (see [`pack_schedule`]).
pub(crate) fn get_schedule(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Schedule> {
    match row.get_ref(index)? {
        ValueRef::Integer(ms) => DateTime::<Utc>::from_timestamp_millis(ms)
            .map(Schedule::once)
            .ok_or(rusqlite::Error::IntegralValueOutOfRange(index, ms)),
        ValueRef::Text(text) => serde_json::from_slice(text).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(error))
        }),
        other => Err(rusqlite::Error::InvalidColumnType(index, "schedule".into(), other.data_type())),
    }
}

/// The 64-bit FNV-1a hash of a code text, by which `codes` finds an equal text again (equality is still checked:
/// the hash only narrows the search).
pub(crate) fn code_hash(code: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in code.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &PackedId<'_>) -> Value {
        match id.to_sql().expect("to_sql") {
            ToSqlOutput::Owned(value) => value,
            ToSqlOutput::Borrowed(ValueRef::Text(text)) => Value::Text(String::from_utf8_lossy(text).into_owned()),
            _ => panic!("unexpected output"),
        }
    }

    #[test]
    fn ids_made_by_new_id_pack_to_twelve_bytes_and_back() {
        for _ in 0..100 {
            let id = crate::new_id("job");
            let Value::Blob(bytes) = stored(&pack_job_id(&id)) else { panic!("{id} not packed") };
            assert_eq!(bytes.len(), 12);
            assert_eq!(unpack_id("job", ValueRef::Blob(&bytes)).expect("unpack"), id);
        }
    }

    #[test]
    fn other_ids_stay_text() {
        let others = [
            "job_0193a1b2c3d4e5f6a7b8c9d",   // 23 digits
            "job_0193a1b2c3d4e5f6a7b8c9d0a", // 25 digits
            "job_0193A1B2C3D4E5F6A7B8C9D0",  // upper case would not come back the same
            "ver_0193a1b2c3d4e5f6a7b8c9d0",  // another prefix
            "job-0193a1b2c3d4e5f6a7b8c9d0",
            "job_0193a1b2c3d4e5f6a7b8c9dg",
            "my-job",
            "",
            "job_",
            "jöb_0193a1b2c3d4e5f6a7b8c9d0",
        ];
        for id in others {
            assert_eq!(stored(&pack_job_id(id)), Value::Text(id.into()), "{id}");
            assert_eq!(unpack_id("job", ValueRef::Text(id.as_bytes())).expect("unpack"), id);
        }
    }

    #[test]
    fn packed_ids_sort_like_their_text() {
        let mut ids: Vec<String> = (0..200).map(|_| crate::new_id("ver")).collect();
        ids.push("ver_000000000000000000000000".into());
        ids.push("ver_ffffffffffffffffffffffff".into());
        let mut by_bytes = ids.clone();
        by_bytes.sort_by_key(|id| match stored(&pack_version_id(id)) {
            Value::Blob(bytes) => bytes,
            other => panic!("{other:?}"),
        });
        ids.sort();
        assert_eq!(by_bytes, ids);
    }

    #[test]
    fn schedules_pack_exactly() {
        let whole = DateTime::<Utc>::from_timestamp_millis(1_800_000_000_123).expect("time");
        assert_eq!(pack_schedule(&Schedule::once(whole)), Value::Integer(1_800_000_000_123));
        let fine = DateTime::<Utc>::from_timestamp(1_800_000_000, 123_456_789).expect("time");
        assert!(matches!(pack_schedule(&Schedule::once(fine)), Value::Text(_)));
        let before_1970 = DateTime::<Utc>::from_timestamp_millis(-1_500).expect("time");
        assert_eq!(pack_schedule(&Schedule::once(before_1970)), Value::Integer(-1_500));
        let connection = rusqlite::Connection::open_in_memory().expect("open");
        for schedule in [
            Schedule::once(whole),
            Schedule::once(fine),
            Schedule::once(before_1970),
            Schedule::interval(90),
            Schedule::cron("0 9 * * *", Some("Europe/Paris".into())),
        ] {
            let back = connection
                .query_row("SELECT ?1", [pack_schedule(&schedule)], |row| get_schedule(row, 0))
                .expect("read back");
            assert_eq!(back, schedule);
        }
    }

    #[test]
    fn code_hash_is_stable() {
        // The hash is stored: it must never change between builds.
        assert_eq!(code_hash(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_eq!(code_hash("a"), 0xaf63_dc4c_8601_ec8c_u64 as i64);
    }
}
