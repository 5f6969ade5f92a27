/*-------------------------------------------------------------------------
 *
 * identity.c
 *	  Who a request is about: LinkedIn URL normalization, the deterministic
 *	  outcome of an identifier, and the person derived from a 64-bit FNV-1a
 *	  hash of the normalized identifier (a quarter of them, and each
 *	  identifier containing "unicode", with non-ASCII names).  Everything
 *	  here is a pure function of its input, so the same identifier gives
 *	  the same person across restarts.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <stdlib.h>
#include <string.h>

#define LENGTHOF(a) (sizeof(a) / sizeof((a)[0]))

static const char *const first_names[] = {
	"Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken",
	"Margaret", "Dennis", "Radia", "Linus", "Shafi", "Leslie", "Hedy", "Tim",
	"Katherine", "John", "Sophie", "Niklaus", "Anita", "Bjarne", "Jean",
	"Guido", "Adele", "Vint", "Karen", "Yukihiro", "Mary", "Andrew", "Lynn",
	"Michael"
};

static const char *const last_names[] = {
	"Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen",
	"Thompson", "Hamilton", "Ritchie", "Perlman", "Torvalds", "Goldwasser",
	"Lamport", "Lamarr", "Berners-Lee", "Johnson", "McCarthy", "Wilson",
	"Wirth", "Borg", "Stroustrup", "Sammet", "van Rossum", "Goldberg", "Cerf",
	"Jones", "Matsumoto", "Keller", "Tanenbaum", "Conway", "Stonebraker"
};

static const char *const job_titles[] = {
	"Software Engineer", "Senior Software Engineer", "Staff Engineer",
	"Engineering Manager", "Data Scientist", "Product Manager",
	"Database Administrator", "Site Reliability Engineer", "CTO",
	"Solutions Architect", "Security Analyst", "Head of Data",
	"Technical Writer", "QA Engineer", "Developer Advocate", "VP Engineering"
};

static const char *const companies[] = {
	"Acme Analytics", "Globex", "Initech", "Umbrella Data", "Hooli",
	"Stark Industries", "Wayne Enterprises", "Cyberdyne Systems",
	"Soylent Labs", "Tyrell Corp", "Vandelay Industries", "Pied Piper",
	"Massive Dynamic", "Wonka Software", "Aperture Science", "Oscorp"
};

static const char *const locations[] = {
	"Berlin, Germany", "London, United Kingdom", "Paris, France",
	"New York, United States", "San Francisco, United States",
	"Toronto, Canada", "Amsterdam, Netherlands", "Madrid, Spain",
	"Stockholm, Sweden", "Tokyo, Japan", "Singapore", "Sydney, Australia",
	"Bangalore, India", "Sao Paulo, Brazil", "Warsaw, Poland", "Dublin, Ireland"
};

static const char *const skills[] = {
	"PostgreSQL", "C", "Python", "Go", "Rust", "Kubernetes", "SQL",
	"Distributed Systems", "Machine Learning", "Data Modeling", "Linux",
	"Leadership", "Product Strategy", "Security", "Terraform", "Java",
	"TypeScript", "Statistics", "Networking", "Performance Tuning"
};

/*
 * People are not ASCII: the persons of a share of identifiers, and of every
 * identifier containing "unicode", come from these tables (raw UTF-8:
 * accented Latin, Greek, Cyrillic, CJK, Hangul, Arabic and Hebrew written
 * right to left, combining marks, emoji).  Each first name goes with the
 * family name beside it.
 */
static const char *const unicode_names[][2] = {
	{"José", "Álvarez Núñez"}, {"Zoë", "Ødegård"},
	{"Ame\xcc\x81lie", "Lefèvre"}, {"Łukasz", "Wałęsa"},
	{"Søren", "Kierkegaard"}, {"Ιωάννα", "Παπαδοπούλου"},
	{"Анна", "Смирнова"}, {"太郎", "山田"}, {"明", "李"}, {"지민", "김"},
	{"محمد", "العلي"}, {"שרה", "כהן"}, {"Hương", "Nguyễn"},
	{"Ngozi", "Adébáyọ̀"}, {"Siobhán", "Ó Briain"}, {"Çağrı", "Öztürk"}
};

static const char *const unicode_titles[] = {
	"Ingénieure logiciel", "Datenbankadministratorin", "ソフトウェアエンジニア",
	"مهندسة بيانات", "מנהלת מוצר", "Руководитель отдела данных",
	"数据科学家", "Responsable sécurité 🔐"
};

static const char *const unicode_companies[] = {
	"Société Générale des Données", "Müller & Söhne GmbH", "株式会社データ",
	"Ελληνικά Δεδομένα", "☕ Café Labs", "شركة البيانات", "Łódź Systemy",
	"데이터 주식회사"
};

static const char *const unicode_locations[] = {
	"São Paulo, Brasil", "Zürich, Schweiz", "東京, 日本", "القاهرة، مصر",
	"תל אביב, ישראל", "Kraków, Polska", "Reykjavík, Ísland", "서울, 대한민국"
};

/*
 * segment_ok says whether the n bytes at s form one non-empty path segment
 * of a profile URL.  Separators and delimiters were removed by the caller;
 * anything else is accepted (LinkedIn slugs may be percent-encoded, Sales
 * Navigator ids contain commas).
 */
static bool
segment_ok(const char *s, size_t n)
{
	return n > 0 && memchr(s, '/', n) == NULL;
}

/*
 * identity_normalize_url returns the normalized form of a LinkedIn profile
 * URL (malloc'd), or NULL if url is not one.  The URL is lower-cased; an
 * http or https scheme, a subdomain, the query, the fragment and a trailing
 * slash are dropped.  Accepted paths are /in/<slug>, /sales/lead/<id>,
 * /sales/people/<id> and /talent/profile/<id>.
 */
char *
identity_normalize_url(const char *url, size_t len)
{
	char	   *buf = mock_malloc(len + 1);
	char	   *p;
	char	   *host;
	char	   *path;
	char	   *slash;
	char	   *seg[4];
	size_t		seglen[4];
	int			nseg = 0;
	size_t		i;
	sbuf		out;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) url[i];

		if (c <= 0x20 || c == 0x7F)
			goto bad;			/* spaces, controls, NUL */
		buf[i] = (c >= 'A' && c <= 'Z') ? (char) (c + 32) : (char) c;
	}
	buf[len] = '\0';

	p = buf;
	if (strncmp(p, "https://", 8) == 0)
		p += 8;
	else if (strncmp(p, "http://", 7) == 0)
		p += 7;
	p[strcspn(p, "?#")] = '\0';

	host = p;
	slash = strchr(host, '/');
	if (slash == NULL)
		goto bad;
	*slash = '\0';
	path = slash + 1;

	/* host: linkedin.com, optionally behind one subdomain label */
	if (strcmp(host, "linkedin.com") != 0)
	{
		size_t		hlen = strlen(host);
		size_t		label = hlen - strlen(".linkedin.com");

		if (hlen <= strlen(".linkedin.com") ||
			strcmp(host + label, ".linkedin.com") != 0)
			goto bad;
		for (i = 0; i < label; i++)
		{
			char		c = host[i];

			if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
				goto bad;
		}
	}

	/* path: up to 3 segments, one trailing slash allowed */
	while (*path)
	{
		char	   *end = strchr(path, '/');
		size_t		n = end ? (size_t) (end - path) : strlen(path);

		if (nseg == 3 || !segment_ok(path, n))
			goto bad;
		seg[nseg] = path;
		seglen[nseg] = n;
		nseg++;
		if (end == NULL)
			break;
		path = end + 1;
	}

#define SEG_IS(k, lit) (seglen[k] == strlen(lit) && strncmp(seg[k], lit, seglen[k]) == 0)
	if (!((nseg == 2 && SEG_IS(0, "in")) ||
		  (nseg == 3 && SEG_IS(0, "sales") &&
		   (SEG_IS(1, "lead") || SEG_IS(1, "people"))) ||
		  (nseg == 3 && SEG_IS(0, "talent") && SEG_IS(1, "profile"))))
		goto bad;
#undef SEG_IS

	sbuf_init(&out, len + 16);
	sbuf_puts(&out, "linkedin.com");
	for (i = 0; i < (size_t) nseg; i++)
	{
		sbuf_append(&out, "/", 1);
		sbuf_append(&out, seg[i], seglen[i]);
	}
	free(buf);
	return sbuf_detach(&out, NULL);

bad:
	free(buf);
	return NULL;
}

/* contains_ci says whether needle (lower case) occurs in s, ignoring case. */
static bool
contains_ci(const char *s, const char *needle)
{
	size_t		n = strlen(needle);

	for (; *s; s++)
	{
		size_t		i;

		for (i = 0; i < n; i++)
		{
			char		c = s[i];

			if (c >= 'A' && c <= 'Z')
				c = (char) (c + 32);
			if (c != needle[i])
				break;
		}
		if (i == n)
			return true;
	}
	return false;
}

/*
 * identity_is_unicode says whether a normalized identifier asks for
 * non-ASCII text in its person and its failure message: it contains
 * "unicode" (identity_person_json adds a quarter of the others by hash)
 */
bool
identity_is_unicode(const char *normalized)
{
	return contains_ci(normalized, "unicode");
}

/*
 * identity_outcome is the scripted outcome of a normalized identifier, by
 * case-insensitive substring; the first match of invalid, notfound, flaky
 * wins.
 */
mock_outcome
identity_outcome(const char *normalized)
{
	if (contains_ci(normalized, "invalid"))
		return OUTCOME_INVALID;
	if (contains_ci(normalized, "notfound"))
		return OUTCOME_NOT_FOUND;
	if (contains_ci(normalized, "flaky"))
		return OUTCOME_FLAKY;
	return OUTCOME_SUCCESS;
}

/* pick draws an index below n from the hash-seeded generator. */
static size_t
pick(uint64_t *state, size_t n)
{
	return (size_t) (mock_splitmix64(state) % n);
}

/*
 * identity_person_json appends the person object of a normalized
 * identifier.  Every field comes from the FNV-1a hash of the identifier.
 */
void
identity_person_json(sbuf *b, const char *normalized, bool is_url)
{
	uint64_t	h = mock_fnv1a64(normalized, strlen(normalized), MOCK_FNV_OFFSET);
	uint64_t	state = h;
	const char *first = first_names[pick(&state, LENGTHOF(first_names))];
	const char *last = last_names[pick(&state, LENGTHOF(last_names))];
	const char *title = job_titles[pick(&state, LENGTHOF(job_titles))];
	const char *company = companies[pick(&state, LENGTHOF(companies))];
	const char *location = locations[pick(&state, LENGTHOF(locations))];

	/* one identifier in four, by its hash, and each "unicode" one */
	if (h % 4 == 0 || identity_is_unicode(normalized))
	{
		size_t		n = pick(&state, LENGTHOF(unicode_names));

		first = unicode_names[n][0];
		last = unicode_names[n][1];
		title = unicode_titles[pick(&state, LENGTHOF(unicode_titles))];
		company = unicode_companies[pick(&state, LENGTHOF(unicode_companies))];
		location = unicode_locations[pick(&state, LENGTHOF(unicode_locations))];
	}
	size_t		s1 = pick(&state, LENGTHOF(skills));
	size_t		s2 = (s1 + 1 + pick(&state, LENGTHOF(skills) - 1)) % LENGTHOF(skills);
	size_t		s3;
	int			years = 1 + (int) pick(&state, 35);

	/* a third skill distinct from the first two */
	do
	{
		s3 = pick(&state, LENGTHOF(skills));
	} while (s3 == s1 || s3 == s2);

	sbuf_printf(b,
				"{\"personId\":\"per_%016llx\",\"fullName\":\"%s %s\","
				"\"firstName\":\"%s\",\"lastName\":\"%s\","
				"\"headline\":\"%s at %s\",\"jobTitle\":\"%s\","
				"\"companyName\":\"%s\",\"location\":\"%s\",\"linkedinUrl\":",
				(unsigned long long) h, first, last, first, last,
				title, company, title, company, location);
	if (is_url)
	{
		sbuf		url;

		/* normalized is "linkedin.com/<path>" */
		sbuf_init(&url, strlen(normalized) + 16);
		sbuf_puts(&url, "https://www.");
		sbuf_puts(&url, normalized);
		sbuf_json_string(b, url.data, url.len);
		sbuf_free(&url);
	}
	else
		sbuf_puts(b, "null");
	sbuf_printf(b, ",\"skills\":[\"%s\",\"%s\",\"%s\"],\"yearsOfExperience\":%d",
				skills[s1], skills[s2], skills[s3], years);
	/* integers beyond 64 bits, which a client must keep digit for digit */
	if (contains_ci(normalized, "bignum"))
		sbuf_puts(b, ",\"registryNumber\":123456789012345678901234567890123,"
				  "\"balance\":-98765432109876543210987,\"ids\":[18446744073709551616,1e400,7]");
	sbuf_puts(b, "}");
}
