// llmblocks/io/checkpoint.hpp — matching a model's parameters against a
// safetensors checkpoint by name: the one mechanism every model's name map
// uses to load and save.
//
// A model describes its checkpoint as a CheckpointSchema: every tensor it
// needs under the checkpoint's own name (GPT-2's "h.0.attn.c_attn.weight",
// T5's "encoder.block.0.layer.0.SelfAttention.q.weight", ...) bound to the
// Variable that holds it, the name prefixes a file may add ("transformer."),
// and the names a file may carry that hold no parameter (GPT-2's attention
// mask buffers, T5's copies of the shared embedding). load_checkpoint checks
// the whole file first — every missing, unexpected or wrongly shaped tensor is
// collected and reported by name in one Error — and only then copies values,
// so a mismatch never leaves a model half-loaded. F16 and BF16 tensors are
// converted on load.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/core/error.hpp"
#include "llmblocks/io/safetensors.hpp"

namespace llmblocks {

template <class T>
struct CheckpointEntry {
    std::string name;      // the tensor's name in the checkpoint (without an optional prefix)
    Variable<T> variable;  // where its values live in the model
};

template <class T>
struct CheckpointSchema {
    std::string model;                                   // for messages: "gpt2", "t5", ...
    std::vector<CheckpointEntry<T>> entries;             // every parameter, once (a tied weight appears once)
    std::vector<std::string> optional_prefixes;          // a file's names may all carry one of these
    std::function<bool(const std::string&)> ignorable;   // file tensors that are not parameters (buffers, copies)
};

// What load_checkpoint found, for writing results under the file's own names.
struct CheckpointMatch {
    std::string prefix;  // the optional prefix the file's names carry ("" if none)
    // checkpoint name (as in the file) of each schema entry, in schema order
    std::vector<std::string> file_names;
};

namespace detail {

inline std::string list_names(const std::vector<std::string>& names, std::size_t max_shown = 12) {
    std::string s;
    for (std::size_t i = 0; i < names.size() && i < max_shown; ++i) s += (i ? ", '" : "'") + names[i] + "'";
    if (names.size() > max_shown) s += ", ... (" + std::to_string(names.size()) + " in all)";
    return s;
}

// "<head><i><rest>" with i < n_layers written without leading zeros, e.g.
// "h.3.attn.bias": the per-layer buffers a checkpoint may carry.
inline bool is_layer_name(const std::string& name, const std::string& head, index_t n_layers, const std::string& rest) {
    if (name.rfind(head, 0) != 0) return false;
    std::size_t pos = head.size(), digits = 0;
    index_t layer = 0;
    while (pos < name.size() && name[pos] >= '0' && name[pos] <= '9' && digits < 9) {
        layer = layer * 10 + (name[pos] - '0');
        ++pos, ++digits;
    }
    if (digits == 0 || (digits > 1 && name[head.size()] == '0') || layer >= n_layers) return false;
    return name.compare(pos, std::string::npos, rest) == 0;
}

}  // namespace detail

// Checks `path` against `schema`, then loads every entry's values. Throws
// Error naming the file, the model and every missing, unexpected and wrongly
// shaped tensor; the model is untouched unless everything matches.
template <class T>
CheckpointMatch load_checkpoint(const std::filesystem::path& path, const CheckpointSchema<T>& schema) {
    const SafetensorsFile file(path);

    // Which optional prefix do the file's names use? All parameter names must agree.
    std::map<std::string, std::size_t> by_name;
    for (std::size_t i = 0; i < schema.entries.size(); ++i) by_name.emplace(schema.entries[i].name, i);
    std::string prefix;
    for (const std::string& p : schema.optional_prefixes) {
        for (const auto& t : file.tensors()) {
            if (t.name.rfind(p, 0) == 0 && by_name.count(t.name.substr(p.size()))) {
                prefix = p;
                break;
            }
        }
        if (!prefix.empty()) break;
    }

    std::vector<std::string> unexpected, wrong_shape, missing;
    std::vector<const SafetensorsTensor*> found(schema.entries.size(), nullptr);
    for (const auto& t : file.tensors()) {
        std::string name = t.name;
        if (!prefix.empty() && name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
        const auto it = by_name.find(name);
        if (it == by_name.end()) {
            if (!(schema.ignorable && (schema.ignorable(name) || schema.ignorable(t.name)))) unexpected.push_back(t.name);
            continue;
        }
        if (found[it->second]) {  // both "h.0.x" and "transformer.h.0.x"
            unexpected.push_back(t.name);
            continue;
        }
        found[it->second] = &t;
        const Shape& want = schema.entries[it->second].variable.shape();
        if (t.shape != want)
            wrong_shape.push_back("'" + t.name + "' is " + shape_str(t.shape) + " in the file but " + shape_str(want) +
                                  " in the model");
    }
    for (std::size_t i = 0; i < schema.entries.size(); ++i)
        if (!found[i]) missing.push_back(prefix + schema.entries[i].name);

    if (!missing.empty() || !unexpected.empty() || !wrong_shape.empty()) {
        std::string msg = "load_checkpoint: '" + path.string() + "' does not match the " + schema.model + " model:";
        if (!missing.empty()) msg += " missing " + detail::list_names(missing) + ";";
        if (!unexpected.empty()) msg += " unexpected " + detail::list_names(unexpected) + ";";
        if (!wrong_shape.empty()) {
            msg += " wrong shape:";
            for (std::size_t i = 0; i < wrong_shape.size() && i < 12; ++i) msg += (i ? ", " : " ") + wrong_shape[i];
            if (wrong_shape.size() > 12) msg += ", ... (" + std::to_string(wrong_shape.size()) + " in all)";
            msg += ";";
        }
        msg.pop_back();
        throw Error(msg);
    }

    // Everything matches: convert first (a bad dtype throws here, before any copy), then copy.
    std::vector<Tensor<T>> values;
    values.reserve(schema.entries.size());
    for (std::size_t i = 0; i < schema.entries.size(); ++i) values.push_back(file.load<T>(found[i]->name));
    CheckpointMatch match;
    match.prefix = prefix;
    for (std::size_t i = 0; i < schema.entries.size(); ++i) {
        Tensor<T> dst = schema.entries[i].variable.value();
        dst.copy_(values[i]);
        match.file_names.push_back(found[i]->name);
    }
    return match;
}

// Writes every entry's value as F32 under its checkpoint name (with `prefix`
// prepended), atomically. `metadata` goes into the header's __metadata__.
template <class T>
void save_checkpoint(const std::filesystem::path& path, const CheckpointSchema<T>& schema, const std::string& prefix = "",
                     const std::map<std::string, std::string>& metadata = {}) {
    std::vector<std::pair<std::string, TensorF>> tensors;
    tensors.reserve(schema.entries.size());
    for (const auto& e : schema.entries) {
        if constexpr (std::is_same_v<T, float>)
            tensors.emplace_back(prefix + e.name, e.variable.value());
        else
            tensors.emplace_back(prefix + e.name, e.variable.value().template to<float>());
    }
    save_safetensors(path, tensors, metadata);
}

}  // namespace llmblocks
