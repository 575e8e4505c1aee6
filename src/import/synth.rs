//! Deterministic synthetic personal data: plausible names, e-mails, phones,
//! birth dates, postcodes and cities for a handful of locales.
//!
//! Everything here is fake on purpose: e-mail domains are the reserved
//! `example.com/.org/.net`, UK mobiles come from Ofcom's range reserved for
//! drama (07700 900xxx), and the name lists are common given names and
//! surnames combined at random. The same key always yields the same person,
//! so imports and the demo shop are reproducible.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::db::customers::Profile;

/// A synthetic person: the sealed profile plus the clear-text city.
pub struct SyntheticPerson {
    pub profile: Profile,
    pub city: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Locale {
    En,
    De,
    Fr,
    Es,
    Nl,
    It,
}

struct LocaleData {
    first: &'static [&'static str],
    last: &'static [&'static str],
    cities: &'static [&'static str],
}

const EN: LocaleData = LocaleData {
    first: &[
        "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Emily", "Charlie", "Sophie",
        "Thomas", "Grace", "James", "Lily", "William", "Chloe", "Daniel", "Ella", "Samuel", "Ruby",
    ],
    last: &[
        "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
        "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    ],
    cities: &[
        "London",
        "Manchester",
        "Birmingham",
        "Leeds",
        "Bristol",
        "Glasgow",
        "Edinburgh",
        "Cardiff",
        "Liverpool",
        "Sheffield",
        "Norwich",
        "York",
    ],
};
const DE: LocaleData = LocaleData {
    first: &[
        "Lukas",
        "Mia",
        "Leon",
        "Emma",
        "Finn",
        "Hannah",
        "Jonas",
        "Sofia",
        "Paul",
        "Lena",
        "Felix",
        "Marie",
        "Maximilian",
        "Lea",
        "Elias",
        "Anna",
    ],
    last: &[
        "Mueller",
        "Schmidt",
        "Schneider",
        "Fischer",
        "Weber",
        "Meyer",
        "Wagner",
        "Becker",
        "Schulz",
        "Hoffmann",
        "Koch",
        "Richter",
        "Klein",
        "Wolf",
    ],
    cities: &[
        "Berlin",
        "Hamburg",
        "Munich",
        "Cologne",
        "Frankfurt",
        "Stuttgart",
        "Leipzig",
        "Dresden",
        "Bremen",
        "Hanover",
    ],
};
const FR: LocaleData = LocaleData {
    first: &[
        "Gabriel", "Louise", "Raphael", "Jade", "Arthur", "Alice", "Louis", "Chloe", "Jules",
        "Lina", "Adam", "Rose", "Hugo", "Lea", "Lucas", "Manon",
    ],
    last: &[
        "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
        "Moreau", "Simon", "Laurent", "Lefebvre", "Michel",
    ],
    cities: &[
        "Paris",
        "Lyon",
        "Marseille",
        "Toulouse",
        "Nice",
        "Nantes",
        "Strasbourg",
        "Bordeaux",
        "Lille",
        "Rennes",
    ],
};
const ES: LocaleData = LocaleData {
    first: &[
        "Hugo",
        "Lucia",
        "Martin",
        "Sofia",
        "Pablo",
        "Martina",
        "Alejandro",
        "Maria",
        "Daniel",
        "Julia",
        "Alvaro",
        "Paula",
        "Adrian",
        "Valeria",
    ],
    last: &[
        "Garcia",
        "Rodriguez",
        "Gonzalez",
        "Fernandez",
        "Lopez",
        "Martinez",
        "Sanchez",
        "Perez",
        "Gomez",
        "Martin",
        "Jimenez",
        "Ruiz",
        "Hernandez",
        "Diaz",
    ],
    cities: &[
        "Madrid",
        "Barcelona",
        "Valencia",
        "Seville",
        "Zaragoza",
        "Malaga",
        "Bilbao",
        "Granada",
    ],
};
const NL: LocaleData = LocaleData {
    first: &[
        "Daan", "Emma", "Sem", "Julia", "Lucas", "Mila", "Levi", "Tess", "Finn", "Sophie", "Milan",
        "Zoe", "Bram", "Noor",
    ],
    last: &[
        "de Jong",
        "Jansen",
        "de Vries",
        "van den Berg",
        "van Dijk",
        "Bakker",
        "Janssen",
        "Visser",
        "Smit",
        "Meijer",
        "de Boer",
        "Mulder",
    ],
    cities: &[
        "Amsterdam",
        "Rotterdam",
        "The Hague",
        "Utrecht",
        "Eindhoven",
        "Groningen",
        "Tilburg",
        "Haarlem",
    ],
};
const IT: LocaleData = LocaleData {
    first: &[
        "Leonardo",
        "Sofia",
        "Francesco",
        "Aurora",
        "Alessandro",
        "Giulia",
        "Lorenzo",
        "Ginevra",
        "Mattia",
        "Alice",
        "Andrea",
        "Beatrice",
        "Tommaso",
        "Emma",
    ],
    last: &[
        "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino",
        "Greco", "Bruno", "Gallo", "Conti", "De Luca",
    ],
    cities: &[
        "Rome", "Milan", "Naples", "Turin", "Palermo", "Genoa", "Bologna", "Florence", "Venice",
    ],
};

fn locale_for(country: &str) -> Locale {
    match country {
        "Germany" | "Austria" | "Switzerland" => Locale::De,
        "France" | "Belgium" => Locale::Fr,
        "Spain" | "Portugal" | "Brazil" => Locale::Es,
        "Netherlands" => Locale::Nl,
        "Italy" | "Malta" => Locale::It,
        _ => Locale::En,
    }
}

fn data(locale: Locale) -> &'static LocaleData {
    match locale {
        Locale::En => &EN,
        Locale::De => &DE,
        Locale::Fr => &FR,
        Locale::Es => &ES,
        Locale::Nl => &NL,
        Locale::It => &IT,
    }
}

/// International calling code for the countries of the data sets.
fn calling_code(country: &str) -> &'static str {
    match country {
        "EIRE" | "Ireland" => "353",
        "Germany" => "49",
        "France" => "33",
        "Spain" => "34",
        "Netherlands" => "31",
        "Belgium" => "32",
        "Switzerland" => "41",
        "Austria" => "43",
        "Portugal" => "351",
        "Italy" => "39",
        "Australia" => "61",
        "Norway" => "47",
        "Sweden" => "46",
        "Denmark" => "45",
        "Finland" => "358",
        "USA" | "Canada" => "1",
        "Japan" => "81",
        _ => "44",
    }
}

fn pick(rng: &mut impl Rng, items: &'static [&'static str]) -> &'static str {
    items.choose(rng).copied().unwrap_or("")
}

fn digits(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

fn letters(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'A' + rng.gen_range(0..26u8)))
        .collect()
}

fn postcode(rng: &mut impl Rng, locale: Locale) -> String {
    match locale {
        Locale::En => {
            const AREAS: &[&str] = &["SW", "NW", "EC", "M", "B", "LS", "BS", "G", "EH", "CF", "L"];
            format!(
                "{}{} {}{}",
                pick(rng, AREAS),
                rng.gen_range(1..20),
                rng.gen_range(1..10),
                letters(rng, 2)
            )
        }
        Locale::Nl => format!("{} {}", rng.gen_range(1000..10000), letters(rng, 2)),
        Locale::De | Locale::Fr | Locale::Es | Locale::It => {
            format!("{:05}", rng.gen_range(1000..99000))
        }
    }
}

fn phone(rng: &mut impl Rng, country: &str, locale: Locale) -> String {
    let code = calling_code(country);
    match (code, locale) {
        // Ofcom reserves 07700 900000–900999 for fiction.
        ("44", _) => format!("+44 7700 900{}", digits(rng, 3)),
        (_, Locale::Fr) => format!(
            "+{code} 6 {} {} {} {}",
            digits(rng, 2),
            digits(rng, 2),
            digits(rng, 2),
            digits(rng, 2)
        ),
        (_, Locale::De) => format!("+{code} 15{} {}", digits(rng, 1), digits(rng, 7)),
        (_, Locale::Nl) => format!("+{code} 6 {}", digits(rng, 8)),
        _ => format!("+{code} {} {}", digits(rng, 3), digits(rng, 6)),
    }
}

fn email_local(first: &str, last: &str) -> String {
    format!("{first}.{last}")
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect()
}

/// A synthetic person for `country`, drawn from `rng`.
pub fn person(rng: &mut impl Rng, country: &str) -> SyntheticPerson {
    let locale = locale_for(country);
    let d = data(locale);
    let first = pick(rng, d.first);
    let last = pick(rng, d.last);
    let domain = pick(rng, &["example.com", "example.org", "example.net"]);
    let email = format!(
        "{}{}@{domain}",
        email_local(first, last),
        rng.gen_range(1..1000)
    );
    let birth_date = format!(
        "{}-{:02}-{:02}",
        rng.gen_range(1950..2006),
        rng.gen_range(1..13),
        rng.gen_range(1..29)
    );
    let profile = Profile {
        email: Some(email),
        phone: Some(phone(rng, country, locale)),
        name: Some(format!("{first} {last}")),
        birth_date: Some(birth_date),
        postcode: Some(postcode(rng, locale)),
    };
    SyntheticPerson {
        profile,
        city: pick(rng, d.cities).to_owned(),
    }
}

/// The synthetic person of a stable key (such as a CustomerID): seeded by a
/// hash of the key, so every run yields the same values.
pub fn person_for_key(key: &str, country: &str) -> SyntheticPerson {
    let mut rng = ChaCha8Rng::seed_from_u64(fnv1a(key.as_bytes()));
    person(&mut rng, country)
}

/// FNV-1a: stable across platforms and releases, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_person_and_fake_domains() {
        let a = person_for_key("17850", "United Kingdom");
        let b = person_for_key("17850", "United Kingdom");
        assert_eq!(a.profile.email, b.profile.email);
        assert_eq!(a.city, b.city);
        let email = a.profile.email.clone().unwrap();
        assert!(
            email.ends_with("@example.com")
                || email.ends_with("@example.org")
                || email.ends_with("@example.net")
        );
        assert!(a.profile.phone.clone().unwrap().starts_with("+44 7700 900"));
        let de = person_for_key("12345", "Germany");
        assert_eq!(de.profile.postcode.clone().unwrap().len(), 5);
    }
}
