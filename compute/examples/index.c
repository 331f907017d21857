/*
 * index: a full-text index of the HTML files under the input root.
 *
 *   index [ROOT [OUT]]        (a cairn job: index /in /out, the defaults)
 *
 * Every *.html or *.htm file (the suffix in any case), numbered from 0 in byte order of
 * path, is listed in OUT/files.txt as "N path" lines. OUT/index.txt has one line per
 * term, terms in byte order: "term<TAB>N N N..." with the numbers of the files holding
 * it, ascending, each once.
 *
 * The text of a page is what is left without its markup: tags, comments, declarations
 * and the contents of <script> and <style> are dropped, and every tag separates words
 * (so "<td>a</td><td>b</td>" is two terms, at the price of splitting the rare word that
 * markup cuts in two). The entities &amp; &lt; &gt; &quot; decode to the punctuation they
 * stand for, numeric ones (&#NN; &#xHH;) to their character in UTF-8, and any other named
 * entity (&nbsp; &mdash;...) separates words rather than becoming a term of its own.
 * A term is a run of ASCII letters and digits, lowercased, and of bytes >= 0x80 (so UTF-8
 * words stay whole), at least two bytes long. The non-ASCII characters that separate
 * words are Unicode's spaces (U+00A0 no-break space, U+2000-U+200A, U+202F, U+205F,
 * U+3000; raw in UTF-8 or as numeric entities), which generated documentation puts
 * between numbers and units.
 *
 * Memory: each distinct term is stored once (a hash table of term numbers over an arena
 * of strings); the postings are collected as one array of term numbers, file after file,
 * and only grouped by term at the end, so a posting costs 4 bytes while indexing and 4
 * more while writing.
 */
#define _POSIX_C_SOURCE 200809L
#include "example.h"
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MIN_TERM 2
#define ENTITY_MAX 32           /* longest "&...;" taken for an entity */
#define ARENA_BLOCK (1 << 20)   /* term strings are carved from blocks this big */
#define NO_FILE UINT32_MAX

struct term {
  char *text;         /* NUL-terminated, in the arena */
  uint32_t length;
  uint32_t hash;
  uint32_t last_file; /* the last file that used it: each file counts once per term */
  uint32_t files;     /* how many files use it */
};

/* All the index's state: the program builds one index, so it lives in statics. */
static struct term *terms;
static uint32_t term_count;
static size_t term_capacity;
static uint32_t *slots; /* open addressing, linear probing: term number + 1, 0 for empty */
static uint32_t slot_mask;
static char *arena;
static size_t arena_left;
/* For each file in turn, the numbers of the distinct terms it holds. */
static uint32_t *uses;
static size_t use_count, use_capacity;
/* The term being read. */
static unsigned char *word;
static size_t word_length, word_capacity;

static uint32_t hash_bytes(const unsigned char *p, size_t n)
{
  uint32_t h = 2166136261u; /* FNV-1a: simple, and the same on every worker */
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 16777619u;
  return h;
}

static char *arena_copy(const unsigned char *p, size_t n)
{
  if (n + 1 > arena_left) {
    /* the rest of the old block is abandoned: at most one term's worth */
    size_t size = n + 1 > ARENA_BLOCK ? n + 1 : ARENA_BLOCK;
    arena = example_malloc(size);
    arena_left = size;
  }
  char *s = arena;
  memcpy(s, p, n);
  s[n] = '\0';
  arena += n + 1;
  arena_left -= n + 1;
  return s;
}

static void slots_grow(void)
{
  size_t capacity = (size_t)slot_mask + 1;
  /* the mask is 32 bits, and so is size_t in a module */
  if (!slots)
    capacity = 1u << 16;
  else if (capacity > UINT32_MAX / 2 || capacity > SIZE_MAX / 2 / sizeof *slots)
    example_die("out of memory (too many distinct terms)");
  else
    capacity *= 2;
  free(slots);
  slots = example_malloc(capacity * sizeof *slots);
  memset(slots, 0, capacity * sizeof *slots);
  slot_mask = (uint32_t)(capacity - 1);
  for (uint32_t id = 0; id < term_count; id++) {
    uint32_t i = terms[id].hash & slot_mask;
    while (slots[i])
      i = (i + 1) & slot_mask;
    slots[i] = id + 1;
  }
}

/* The number of the term P[0..N), added if new. */
static uint32_t term_intern(const unsigned char *p, size_t n)
{
  uint32_t h = hash_bytes(p, n);
  uint32_t i = h & slot_mask;
  for (; slots[i]; i = (i + 1) & slot_mask) {
    struct term *t = &terms[slots[i] - 1];
    if (t->hash == h && t->length == n && !memcmp(t->text, p, n))
      return slots[i] - 1;
  }
  if (term_count == UINT32_MAX - 1)
    example_die("too many distinct terms");
  if (term_count == term_capacity)
    terms = example_grow(terms, &term_capacity, sizeof *terms, 1u << 15);
  uint32_t id = term_count++;
  terms[id] = (struct term){arena_copy(p, n), (uint32_t)n, h, NO_FILE, 0};
  slots[i] = id + 1;
  if ((uint64_t)term_count * 4 > ((uint64_t)slot_mask + 1) * 3) /* keep it under 3/4 full */
    slots_grow();
  return id;
}

/* The word read so far is complete: count it for FILE if it is long enough. */
static void word_end(uint32_t file)
{
  if (word_length >= MIN_TERM) {
    uint32_t id = term_intern(word, word_length); /* may move terms: index after */
    struct term *t = &terms[id];
    if (t->last_file != file) {
      t->last_file = file;
      t->files++;
      if (use_count == use_capacity)
        uses = example_grow(uses, &use_capacity, sizeof *uses, 1u << 20);
      uses[use_count++] = id;
    }
  }
  word_length = 0;
}

/* One byte of text: part of a term, or a separator. */
static void text_byte(unsigned char c, uint32_t file)
{
  if (c >= 'A' && c <= 'Z')
    c = (unsigned char)(c - 'A' + 'a');
  else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80)) {
    word_end(file);
    return;
  }
  if (word_length == word_capacity)
    word = example_grow(word, &word_capacity, 1, 256);
  word[word_length++] = c;
}

static bool is_unicode_space(uint32_t cp)
{
  return cp == 0xa0 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x202f || cp == 0x205f ||
         cp == 0x3000;
}

/* The length of the UTF-8 encoded Unicode space at S[I], or 0 if there is none. All of
 * them take two bytes (U+00A0) or three. */
static size_t utf8_space(const unsigned char *s, size_t n, size_t i)
{
  if (n - i >= 2 && s[i] == 0xc2 && s[i + 1] == 0xa0)
    return 2;
  if (n - i < 3 || (s[i] != 0xe2 && s[i] != 0xe3) || (s[i + 1] & 0xc0) != 0x80 ||
      (s[i + 2] & 0xc0) != 0x80)
    return 0;
  uint32_t cp = (uint32_t)(s[i] & 0x0f) << 12 | (uint32_t)(s[i + 1] & 0x3f) << 6;
  return is_unicode_space(cp | (s[i + 2] & 0x3f)) ? 3 : 0;
}

static void text_code_point(uint32_t cp, uint32_t file)
{
  if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || is_unicode_space(cp)) {
    word_end(file); /* not a character, or a space */
  } else if (cp < 0x80) {
    text_byte((unsigned char)cp, file);
  } else if (cp < 0x800) {
    text_byte((unsigned char)(0xc0 | cp >> 6), file);
    text_byte((unsigned char)(0x80 | (cp & 0x3f)), file);
  } else if (cp < 0x10000) {
    text_byte((unsigned char)(0xe0 | cp >> 12), file);
    text_byte((unsigned char)(0x80 | (cp >> 6 & 0x3f)), file);
    text_byte((unsigned char)(0x80 | (cp & 0x3f)), file);
  } else {
    text_byte((unsigned char)(0xf0 | cp >> 18), file);
    text_byte((unsigned char)(0x80 | (cp >> 12 & 0x3f)), file);
    text_byte((unsigned char)(0x80 | (cp >> 6 & 0x3f)), file);
    text_byte((unsigned char)(0x80 | (cp & 0x3f)), file);
  }
}

static bool is_space(unsigned char c)
{
  return c == ' ' || (c >= '\t' && c <= '\r');
}

static bool is_alpha(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(unsigned char c)
{
  return is_alpha(c) || (c >= '0' && c <= '9');
}

static int hex_value(unsigned char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* S[I] is '&'. Decode the entity there and return the index after it; without a
 * well-formed entity the '&' is an ordinary (separating) character. */
static size_t entity(const unsigned char *s, size_t n, size_t i, uint32_t file)
{
  size_t end = i + 1, limit = n - i > ENTITY_MAX ? i + ENTITY_MAX : n;
  while (end < limit && s[end] != ';')
    end++;
  if (end >= limit) {
    word_end(file);
    return i + 1;
  }
  if (end > i + 2 && s[i + 1] == '#') { /* &#NN; or &#xHH; */
    bool hex = s[i + 2] == 'x' || s[i + 2] == 'X';
    size_t j = i + (hex ? 3 : 2);
    uint32_t cp = 0;
    if (j == end)
      cp = UINT32_MAX;
    for (; j < end; j++) {
      int d = hex ? hex_value(s[j]) : (s[j] >= '0' && s[j] <= '9' ? s[j] - '0' : -1);
      if (d < 0) {
        cp = UINT32_MAX;
        break;
      }
      cp = cp > 0x10ffff ? cp : cp * (hex ? 16 : 10) + (uint32_t)d;
    }
    if (cp == UINT32_MAX) {
      word_end(file);
      return i + 1;
    }
    text_code_point(cp, file);
    return end + 1;
  }
  for (size_t j = i + 1; j < end; j++) {
    if (!is_alnum(s[j])) {
      word_end(file);
      return i + 1;
    }
  }
  /* &amp; &lt; &gt; &quot; are punctuation and every other named entity is taken for
   * one: all of them separate words */
  word_end(file);
  return end + 1;
}

/* Past the '>' that closes a tag whose name ends before I; '>' inside quoted attribute
 * values does not count. */
static size_t tag_end(const unsigned char *s, size_t n, size_t i)
{
  while (i < n && s[i] != '>') {
    if (s[i++] != '=')
      continue;
    while (i < n && is_space(s[i]))
      i++;
    if (i < n && (s[i] == '"' || s[i] == '\'')) {
      const unsigned char *close = memchr(s + i + 1, s[i], n - i - 1);
      i = close ? (size_t)(close - s) + 1 : n;
    }
  }
  return i < n ? i + 1 : n;
}

static bool name_is(const unsigned char *s, size_t length, const char *name)
{
  return strlen(name) == length && !strncasecmp((const char *)s, name, length);
}

/* Past the element's end tag </NAME ...> at or after I, or N if there is none. */
static size_t raw_text_end(const unsigned char *s, size_t n, size_t i, const char *name)
{
  size_t length = strlen(name);
  while (i < n) {
    const unsigned char *lt = memchr(s + i, '<', n - i);
    if (!lt)
      return n;
    i = (size_t)(lt - s) + 1;
    if (n - i > length && s[i] == '/' && !strncasecmp((const char *)s + i + 1, name, length)) {
      size_t after = i + 1 + length;
      if (after == n || is_space(s[after]) || s[after] == '/' || s[after] == '>')
        return tag_end(s, n, after);
    }
  }
  return n;
}

/* S[I] is '<'. Skip the markup there and return the index after it. */
static size_t markup(const unsigned char *s, size_t n, size_t i)
{
  if (n - i >= 4 && !memcmp(s + i, "<!--", 4)) {
    for (size_t j = i + 4; n - j >= 3; j++)
      if (!memcmp(s + j, "-->", 3))
        return j + 3;
    return n;
  }
  if (i + 1 < n && (s[i + 1] == '!' || s[i + 1] == '?')) /* <!DOCTYPE ...>, <?xml ...?> */
    return tag_end(s, n, i + 2);
  bool closing = i + 1 < n && s[i + 1] == '/';
  size_t name = i + 1 + closing, j = name;
  while (j < n && is_alnum(s[j]))
    j++;
  if (j == name || !is_alpha(s[name]))
    return i + 1; /* a '<' in text */
  size_t after = tag_end(s, n, j);
  if (!closing && name_is(s + name, j - name, "script"))
    return raw_text_end(s, n, after, "script");
  if (!closing && name_is(s + name, j - name, "style"))
    return raw_text_end(s, n, after, "style");
  return after;
}

static void index_page(const unsigned char *s, size_t n, uint32_t file)
{
  size_t i = 0, space;
  while (i < n) {
    if (s[i] == '<') {
      word_end(file);
      i = markup(s, n, i);
    } else if (s[i] == '&') {
      i = entity(s, n, i, file);
    } else if (s[i] >= 0xc2 && (space = utf8_space(s, n, i)) > 0) {
      word_end(file);
      i += space;
    } else {
      text_byte(s[i++], file);
    }
  }
  word_end(file);
}

/* The whole file in *BUFFER (grown as needed); its length. */
static size_t read_file(const char *path, unsigned char **buffer, size_t *capacity)
{
  size_t length = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    example_die("%s: cannot open: %s", path, strerror(errno));
  for (;;) {
    while (*capacity - length < EXAMPLE_READ_BUFFER) /* room for a whole read */
      *buffer = example_grow(*buffer, capacity, 1, 2 * EXAMPLE_READ_BUFFER);
    ssize_t got = read(fd, *buffer + length, *capacity - length);
    if (got < 0) {
      if (errno == EINTR)
        continue;
      example_die("%s: cannot read: %s", path, strerror(errno));
    }
    if (got == 0)
      break;
    length += (size_t)got;
  }
  close(fd);
  return length;
}

static bool is_html(const char *path)
{
  const char *dot = strrchr(path, '.');
  return dot && !strchr(dot, '/') && (!strcasecmp(dot, ".html") || !strcasecmp(dot, ".htm"));
}

static int compare_terms(const void *a, const void *b)
{
  return strcmp(terms[*(const uint32_t *)a].text, terms[*(const uint32_t *)b].text);
}

/* Decimal digits of V, then SUFFIX, onto OUT: fprintf per number would dominate. */
static void put_number(FILE *out, uint32_t v, char suffix)
{
  char digits[12], *p = digits + sizeof digits;
  *--p = suffix;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  fwrite(p, 1, (size_t)(digits + sizeof digits - p), out);
}

/* Group the postings by term and write them in byte order of term. FILE_END[F] is where
 * file F's run of term numbers ends in USES. */
static void write_index(FILE *out, const size_t *file_end, uint32_t file_count)
{
  uint32_t *order = example_malloc((size_t)term_count * sizeof *order);
  size_t *start = example_malloc((size_t)term_count * sizeof *start);
  uint32_t *postings = example_malloc(use_count * sizeof *postings);
  size_t at = 0;
  for (uint32_t id = 0; id < term_count; id++) {
    order[id] = id;
    start[id] = at;
    at += terms[id].files;
  }
  /* files in increasing order, so each term's list comes out ascending */
  size_t u = 0;
  for (uint32_t f = 0; f < file_count; f++)
    for (; u < file_end[f]; u++)
      postings[start[uses[u]]++] = f;
  qsort(order, term_count, sizeof *order, compare_terms);
  for (uint32_t k = 0; k < term_count; k++) {
    const struct term *t = &terms[order[k]];
    const uint32_t *p = postings + start[order[k]] - t->files; /* start now points past */
    fwrite(t->text, 1, t->length, out);
    fputc('\t', out);
    for (uint32_t j = 0; j < t->files; j++)
      put_number(out, p[j], j + 1 < t->files ? ' ' : '\n');
  }
  free(postings);
  free(start);
  free(order);
}

int main(int argc, char **argv)
{
  const char *in, *out;
  struct example_files files;
  unsigned char *page = NULL;
  size_t page_capacity = 0;
  example_args(argc, argv, &in, &out);
  example_list(in, &files);
  slots_grow();

  FILE *list = example_create(out, "files.txt");
  size_t *file_end = example_malloc(files.count * sizeof *file_end);
  uint32_t file_count = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < files.count; i++) {
    if (!is_html(files.paths[i]))
      continue;
    char *path = example_file_path(&files, i);
    size_t n = read_file(path, &page, &page_capacity);
    free(path);
    bytes += n;
    index_page(page, n, file_count);
    file_end[file_count] = use_count;
    put_number(list, file_count, ' ');
    fprintf(list, "%s\n", files.paths[i]);
    file_count++;
  }
  example_close(list, out, "files.txt");
  free(page);

  FILE *terms_out = example_create(out, "index.txt");
  write_index(terms_out, file_end, file_count);
  example_close(terms_out, out, "index.txt");
  fprintf(stderr, "%s: %u files, %llu bytes, %u terms, %zu postings\n", example_prog,
          (unsigned)file_count, (unsigned long long)bytes, (unsigned)term_count, use_count);
  /* the terms and their arena go with the process */
  free(file_end);
  example_files_free(&files);
  return 0;
}
