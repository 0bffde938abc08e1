// A Weir filter written in C against the WIT alone (sdk/wit/plugin.wit):
// it keeps the events whose status equals a wanted value and drops the rest.
// Events without a status pass, as the state-change filter does.
//
// Config: `status` — the tag or string field holding the status (default
// `status`); `keep` — the value to keep (default `unhealthy`).
//
// It works on the columns directly: for a tag column it compares each
// dictionary entry once, then reads one key per event.

#include <stdlib.h>
#include <string.h>

#include "filter_plugin.h"

static char *status_column = NULL;
static char *wanted = NULL;

static char *copy_string(const filter_plugin_string_t *s) {
  char *out = malloc(s->len + 1);
  if (out == NULL) abort();
  memcpy(out, s->ptr, s->len);
  out[s->len] = '\0';
  return out;
}

static int equals(const uint8_t *bytes, size_t len, const char *text) {
  return strlen(text) == len && memcmp(bytes, text, len) == 0;
}

static int is_valid(const weir_plugin_types_validity_t *validity, size_t row) {
  return validity->len == 0 || (validity->ptr[row / 8] >> (row % 8)) & 1;
}

static void log_info(const char *message) {
  filter_plugin_string_t text;
  filter_plugin_string_set(&text, message);
  weir_plugin_log_log(WEIR_PLUGIN_LOG_LEVEL_INFO, &text);
}

bool exports_weir_plugin_filter_init(exports_weir_plugin_filter_config_t *config, filter_plugin_string_t *err) {
  free(status_column);
  free(wanted);
  status_column = strdup("status");
  wanted = strdup("unhealthy");
  for (size_t i = 0; i < config->len; i++) {
    filter_plugin_tuple2_string_string_t *pair = &config->ptr[i];
    if (equals(pair->f0.ptr, pair->f0.len, "status")) {
      free(status_column);
      status_column = copy_string(&pair->f1);
    } else if (equals(pair->f0.ptr, pair->f0.len, "keep")) {
      free(wanted);
      wanted = copy_string(&pair->f1);
    } else {
      filter_plugin_string_dup(err, "unknown config key (expected status, keep)");
      exports_weir_plugin_filter_config_free(config);
      return false;
    }
  }
  exports_weir_plugin_filter_config_free(config);
  log_info("c filter ready");
  return true;
}

bool exports_weir_plugin_filter_filter(exports_weir_plugin_filter_batch_t *batch, filter_plugin_list_u32_t *ret, filter_plugin_string_t *err) {
  size_t rows = batch->time.len;
  uint32_t *kept = malloc(rows * sizeof(uint32_t) + 1);
  if (kept == NULL) abort();
  size_t n = 0;

  weir_plugin_types_column_values_t *status = NULL;
  for (size_t c = 0; c < batch->columns.len; c++) {
    weir_plugin_types_column_t *column = &batch->columns.ptr[c];
    if (equals(column->name.ptr, column->name.len, status_column)) status = &column->values;
  }

  if (status == NULL) {
    for (size_t row = 0; row < rows; row++) kept[n++] = (uint32_t)row;
  } else if (status->tag == WEIR_PLUGIN_TYPES_COLUMN_VALUES_TAG) {
    weir_plugin_types_tag_column_t *tags = &status->val.tag;
    size_t entries = tags->dictionary_offsets.len - 1;
    char *match = malloc(entries + 1);
    if (match == NULL) abort();
    for (size_t d = 0; d < entries; d++) {
      uint32_t start = tags->dictionary_offsets.ptr[d], end = tags->dictionary_offsets.ptr[d + 1];
      match[d] = (char)equals(tags->dictionary_data.ptr + start, end - start, wanted);
    }
    for (size_t row = 0; row < rows; row++) {
      if (!is_valid(&tags->validity, row) || match[tags->keys.ptr[row]]) kept[n++] = (uint32_t)row;
    }
    free(match);
  } else if (status->tag == WEIR_PLUGIN_TYPES_COLUMN_VALUES_STRING) {
    weir_plugin_types_string_column_t *strings = &status->val.string;
    for (size_t row = 0; row < rows; row++) {
      uint32_t start = strings->offsets.ptr[row], end = strings->offsets.ptr[row + 1];
      if (!is_valid(&strings->validity, row) || equals(strings->data.ptr + start, end - start, wanted)) {
        kept[n++] = (uint32_t)row;
      }
    }
  } else {
    free(kept);
    filter_plugin_string_dup(err, "the status column is neither a tag nor a string field");
    exports_weir_plugin_filter_batch_free(batch);
    return false;
  }

  exports_weir_plugin_filter_batch_free(batch);
  ret->ptr = kept;
  ret->len = n;
  return true;
}
