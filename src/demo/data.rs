//! Deterministic demo data: every record is a pure function of (seed, id), so two processes
//! with one seed serve identical data (the backends keep only a cache of titles' and artwork's
//! JSON, and what mutations wrote).

use serde::Serialize;

/// Number of titles in the demo catalog.
pub const TITLES: u64 = 12_000;
/// Number of series in the demo catalog (IDs `s1`…`s300`, beside the titles).
pub const SHOWS: u64 = 300;
/// Number of member profiles.
pub const PROFILES: u64 = 1_000;
/// Rows each profile's home page can have.
pub const MAX_ROWS: usize = 60;
/// Title IDs in each row.
pub const TITLES_PER_ROW: usize = 60;

const ADJECTIVES: &[&str] = &[
    "Silent", "Crimson", "Hidden", "Last", "Broken", "Golden", "Midnight", "Distant", "Wild", "Frozen",
    "Electric", "Lost", "Quiet", "Burning", "Hollow", "Bright", "Savage", "Secret", "Endless", "Northern",
];
const NOUNS: &[&str] = &[
    "Harbor",
    "Empire",
    "Signal",
    "Garden",
    "Frontier",
    "Orchard",
    "Kingdom",
    "Circuit",
    "Lighthouse",
    "Canyon",
    "Archive",
    "Voyage",
    "Island",
    "Protocol",
    "Reckoning",
    "Station",
    "Horizon",
    "Tide",
    "Republic",
    "Parade",
];
const GENRES: &[&str] = &[
    "Action",
    "Comedy",
    "Drama",
    "Documentary",
    "Thriller",
    "Sci-Fi",
    "Romance",
    "Horror",
    "Animation",
    "Crime",
    "Fantasy",
    "Family",
];
const MATURITY: &[&str] = &["G", "PG", "PG-13", "R", "TV-MA"];
const FIRST_NAMES: &[&str] = &[
    "Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas", "Kira", "Luca", "Mei",
    "Nia", "Omar", "Priya",
];
pub(super) const SIZES: &[&str] = &["SMALL", "MEDIUM", "LARGE"];

/// The seeded generator behind every demo record.
#[derive(Debug, Clone, Copy)]
pub struct DemoData {
    seed: u64,
}

/// A catalog title.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Title {
    pub id: u64,
    pub name: String,
    pub year: u32,
    pub maturity: &'static str,
    pub genres: Vec<&'static str>,
    pub runtime_minutes: u32,
    pub synopsis: String,
}

/// A series: seasons of episodes. Its ID is `s` and a number.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Show {
    pub id: String,
    pub name: String,
    pub year: u32,
    pub maturity: &'static str,
    pub genres: Vec<&'static str>,
    pub season_ids: Vec<String>,
}

/// One season of a series: `s3-2` is season 2 of `s3`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Season {
    pub id: String,
    pub show_id: String,
    pub number: u32,
    pub episode_ids: Vec<String>,
}

/// One episode: `s3-2-5` is episode 5 of season `s3-2`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Episode {
    pub id: String,
    pub season_id: String,
    pub number: u32,
    pub name: String,
    pub runtime_minutes: u32,
}

/// A member profile.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub id: u64,
    pub name: String,
    pub maturity: &'static str,
}

/// A row of the home page: a name and the IDs of its titles.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    pub title_ids: Vec<u64>,
}

/// An image for one title at one size.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Artwork {
    pub title_id: u64,
    pub size: &'static str,
    pub url: String,
    pub width: u32,
}

/// Aggregate rating of one title.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rating {
    pub title_id: u64,
    pub average: f64,
    pub count: u64,
}

/// Where a profile stopped watching a title.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bookmark {
    pub profile_id: u64,
    pub title_id: u64,
    pub position_seconds: u32,
}

impl Bookmark {
    /// Appends the bookmark's JSON, the bytes `serde_json` writes for it. Written by hand
    /// because a batch of bookmarks is most of what the history backend does per home query,
    /// and the derived serializer took ~600 instructions an item (three integers).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"{\"profileId\":");
        out.extend_from_slice(n.format(self.profile_id).as_bytes());
        out.extend_from_slice(b",\"titleId\":");
        out.extend_from_slice(n.format(self.title_id).as_bytes());
        out.extend_from_slice(b",\"positionSeconds\":");
        out.extend_from_slice(n.format(self.position_seconds).as_bytes());
        out.push(b'}');
    }
}

/// splitmix64: a tiny, well-known mixing function. Hand-written because the data only has to
/// be stable across versions and platforms, which seeded generators from crates do not promise.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pick<T: Copy>(list: &[T], h: u64) -> T {
    list[(h % list.len() as u64) as usize]
}

impl DemoData {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    fn h(&self, salt: u64, a: u64, b: u64) -> u64 {
        mix(self.seed ^ mix(salt ^ mix(a ^ mix(b))))
    }

    /// Whether a title exists, without making it.
    pub fn has_title(&self, id: u64) -> bool {
        (1..=TITLES).contains(&id)
    }

    /// A title's runtime in minutes, without making the rest of it.
    fn runtime_minutes(&self, id: u64) -> u32 {
        22 + (self.h(9, id, 0) % 140) as u32
    }

    pub fn title(&self, id: u64) -> Option<Title> {
        if !self.has_title(id) {
            return None;
        }
        let h = |salt| self.h(salt, id, 0);
        let genre_count = 1 + (h(5) % 3) as usize;
        let mut genres: Vec<&'static str> =
            (0..genre_count).map(|i| pick(GENRES, self.h(6, id, i as u64))).collect();
        genres.dedup();
        let name = format!("The {} {}", pick(ADJECTIVES, h(1)), pick(NOUNS, h(2)));
        Some(Title {
            id,
            synopsis: format!(
                "{name}: a {} story of {} and {}.",
                genres[0].to_lowercase(),
                pick(NOUNS, h(7)).to_lowercase(),
                pick(NOUNS, h(8)).to_lowercase()
            ),
            name,
            year: 1950 + (h(3) % 76) as u32,
            maturity: pick(MATURITY, h(4)),
            genres,
            runtime_minutes: self.runtime_minutes(id),
        })
    }

    /// A series by ID (`s1`…`s300`); it has 1 to 6 seasons.
    pub fn show(&self, id: &str) -> Option<Show> {
        let n: u64 = id.strip_prefix('s')?.parse().ok().filter(|n| (1..=SHOWS).contains(n))?;
        let h = |salt| self.h(salt, n, 1 << 40);
        let seasons = 1 + h(70) % 6;
        let mut genres: Vec<&'static str> =
            (0..1 + h(71) % 2).map(|i| pick(GENRES, self.h(72, n, i))).collect();
        genres.dedup();
        Some(Show {
            id: format!("s{n}"),
            name: format!("{} {}", pick(ADJECTIVES, h(73)), pick(NOUNS, h(74))),
            year: 1990 + (h(75) % 36) as u32,
            maturity: pick(MATURITY, h(76)),
            genres,
            season_ids: (1..=seasons).map(|s| format!("s{n}-{s}")).collect(),
        })
    }

    /// A season by ID (`s3-2`); it has 6 to 13 episodes.
    pub fn season(&self, id: &str) -> Option<Season> {
        let (show_id, number) = id.rsplit_once('-')?;
        let show = self.show(show_id)?;
        let number: u32 = number.parse().ok()?;
        if !show.season_ids.iter().any(|s| s == id) {
            return None;
        }
        let episodes = 6 + self.h(77, show_id.len() as u64 ^ u64::from(number), mix(id.len() as u64)) % 8;
        Some(Season {
            id: id.to_owned(),
            show_id: show.id,
            number,
            episode_ids: (1..=episodes).map(|e| format!("{id}-{e}")).collect(),
        })
    }

    /// An episode by ID (`s3-2-5`).
    pub fn episode(&self, id: &str) -> Option<Episode> {
        let (season_id, number) = id.rsplit_once('-')?;
        let season = self.season(season_id)?;
        let number: u32 = number.parse().ok()?;
        if !season.episode_ids.iter().any(|e| e == id) {
            return None;
        }
        let h = self.h(78, u64::from(number), season_id.bytes().fold(0, |a, b| mix(a ^ u64::from(b))));
        Some(Episode {
            id: id.to_owned(),
            season_id: season.id,
            number,
            name: format!("Chapter {number}: The {}", pick(NOUNS, h)),
            runtime_minutes: 22 + (h >> 8) as u32 % 40,
        })
    }

    /// Whether a profile exists, without making it.
    fn has_profile(&self, id: u64) -> bool {
        (1..=PROFILES).contains(&id)
    }

    pub fn profile(&self, id: u64) -> Option<Profile> {
        if !self.has_profile(id) {
            return None;
        }
        Some(Profile {
            id,
            name: format!("{} {}", pick(FIRST_NAMES, self.h(20, id, 0)), id),
            maturity: pick(MATURITY, self.h(21, id, 0)),
        })
    }

    /// The first `limit` rows of a profile's home page, or `None` for an unknown profile.
    pub fn rows(&self, profile_id: u64, limit: usize) -> Option<Vec<Row>> {
        self.profile(profile_id)?;
        let rows = (0..limit.min(MAX_ROWS))
            .map(|r| {
                let name = match r {
                    0 => "Continue Watching".to_owned(),
                    1 => "Trending Now".to_owned(),
                    2 => "Top Picks".to_owned(),
                    n => format!("{} #{}", GENRES[n % GENRES.len()], n / GENRES.len() + 1),
                };
                let title_ids = (0..TITLES_PER_ROW as u64)
                    .map(|i| 1 + self.h(30, profile_id, (r as u64) << 32 | i) % TITLES)
                    .collect();
                Row { name, title_ids }
            })
            .collect();
        Some(rows)
    }

    pub fn artwork(&self, title_id: u64, size: &str) -> Option<Artwork> {
        if !self.has_title(title_id) {
            return None;
        }
        let size = *SIZES.iter().find(|s| s.eq_ignore_ascii_case(size))?;
        let width = match size {
            "SMALL" => 342,
            "MEDIUM" => 780,
            _ => 1920,
        };
        let hash = self.h(40, title_id, 0) & 0xffff_ffff;
        Some(Artwork {
            title_id,
            size,
            url: format!("https://art.facade.example/{title_id}/{width}/{hash:08x}.jpg"),
            width,
        })
    }

    pub fn rating(&self, title_id: u64) -> Option<Rating> {
        if !self.has_title(title_id) {
            return None;
        }
        let h = self.h(50, title_id, 0);
        Some(Rating { title_id, average: 1.0 + (h % 41) as f64 / 10.0, count: 10 + (h >> 8) % 100_000 })
    }

    /// A bookmark exists for about half of the (profile, title) pairs.
    pub fn bookmark(&self, profile_id: u64, title_id: u64) -> Option<Bookmark> {
        if !self.has_profile(profile_id) || !self.has_title(title_id) {
            return None;
        }
        let h = self.h(60, profile_id, title_id);
        h.is_multiple_of(2).then(|| Bookmark {
            profile_id,
            title_id,
            position_seconds: ((h >> 8) % (u64::from(self.runtime_minutes(title_id)) * 60)) as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let a = DemoData::new(7);
        let b = DemoData::new(7);
        let c = DemoData::new(8);
        assert_eq!(a.title(42).unwrap().name, b.title(42).unwrap().name);
        let differs = (1..50).any(|id| a.title(id).unwrap().name != c.title(id).unwrap().name);
        assert!(differs);
    }

    /// The seed's records, pinned: earlier figures and answers stay comparable only while the
    /// same seed gives the same data.
    #[test]
    fn seeded_records_stay_as_they_were() {
        let d = DemoData::new(1); // the default seed (config.rs)
        let t = d.title(1).unwrap();
        assert_eq!((t.name.as_str(), t.year, t.runtime_minutes), ("The Quiet Circuit", 1967, 61));
        assert_eq!(t.synopsis, "The Quiet Circuit: a sci-fi story of garden and parade.");
        assert_eq!(d.artwork(2, "medium").unwrap().url, "https://art.facade.example/2/780/7d2732e1.jpg");
        let r = d.rating(4374).unwrap();
        assert_eq!((r.average, r.count), (1.3, 39357));
        assert_eq!(d.bookmark(1, 4374).unwrap().position_seconds, 4232);
        assert!(d.bookmark(1, 3857).is_none());
        assert!(d.bookmark(PROFILES + 1, 4374).is_none() && d.bookmark(1, TITLES + 1).is_none());
        assert_eq!(d.rows(1, 1).unwrap()[0].title_ids[..3], [4374, 4459, 3857]);
    }

    /// The hand-written bookmark JSON is serde_json's, byte for byte.
    #[test]
    fn a_bookmark_is_written_as_serde_json_writes_it() {
        let d = DemoData::new(1);
        let mut seen = 0;
        for b in (1..=PROFILES).flat_map(|p| (1..200).filter_map(move |t| d.bookmark(p, t))) {
            let mut out = Vec::new();
            b.write_json(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&b).unwrap());
            seen += 1;
        }
        let extreme = Bookmark { profile_id: u64::MAX, title_id: 0, position_seconds: u32::MAX };
        let mut out = Vec::new();
        extreme.write_json(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&extreme).unwrap());
        assert!(seen > 100, "{seen} bookmarks compared");
    }

    #[test]
    fn catalog_has_ten_thousand_titles_and_bounds() {
        let d = DemoData::new(1);
        const { assert!(TITLES >= 10_000) };
        assert!(d.title(TITLES).is_some());
        assert!(d.title(TITLES + 1).is_none());
        assert!(d.title(0).is_none());
    }

    #[test]
    fn rows_reference_existing_titles() {
        let d = DemoData::new(1);
        let rows = d.rows(1, 50).unwrap();
        assert_eq!(rows.len(), 50);
        for row in rows {
            assert_eq!(row.title_ids.len(), TITLES_PER_ROW);
            assert!(row.title_ids.iter().all(|id| d.title(*id).is_some()));
        }
        assert!(d.rows(PROFILES + 1, 10).is_none());
    }
}
