// llmblocks/core/tensor.hpp — Tensor<T>: an n-dimensional strided view of a
// shared, aligned buffer.
//
// Shapes and strides are outermost-first, as in PyTorch: a (B, T, C) tensor
// that is contiguous has strides (T*C, C, 1). A Tensor is a handle: copying it
// shares the buffer (like torch.Tensor), and the view operations (view,
// reshape of a contiguous tensor, transpose, permute, narrow, slice, select,
// unsqueeze, expand) return new handles on the same buffer without copying.
// contiguous() and clone() copy. Element types: float, double and int32_t
// (token ids); other arithmetic types work too.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iomanip>
#include <limits>
#include <memory>
#include <numeric>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"

namespace llmblocks {

// Number of elements of a shape (1 for a scalar).
inline index_t shape_numel(const Shape& shape) {
    index_t n = 1;
    for (index_t s : shape) n *= s;
    return n;
}

// Row-major strides of a contiguous tensor of this shape.
inline Shape contiguous_strides(const Shape& shape) {
    Shape strides(shape.size());
    index_t s = 1;
    for (std::size_t i = shape.size(); i-- > 0;) {
        strides[i] = s;
        s *= std::max<index_t>(shape[i], 1);
    }
    return strides;
}

template <class T>
class Tensor {
    static_assert(std::is_arithmetic_v<T>, "Tensor<T>: T must be an arithmetic type");

public:
    using value_type = T;

    // An undefined tensor (no buffer); defined() is false.
    Tensor() = default;

    // A zero-filled contiguous tensor.
    explicit Tensor(Shape shape) : Tensor(empty(std::move(shape))) { fill_(T(0)); }

    // ---- factories -------------------------------------------------------
    // Contiguous, uninitialised.
    static Tensor empty(Shape shape) {
        check_shape("Tensor::empty", shape);
        Tensor t;
        const index_t n = shape_numel(shape);
        t.storage_ = std::make_shared<AlignedBuffer<T>>(n);
        t.strides_ = contiguous_strides(shape);
        t.shape_ = std::move(shape);
        return t;
    }
    static Tensor zeros(Shape shape) { return full(std::move(shape), T(0)); }
    static Tensor ones(Shape shape) { return full(std::move(shape), T(1)); }
    static Tensor full(Shape shape, T value) {
        Tensor t = empty(std::move(shape));
        t.fill_(value);
        return t;
    }
    // A contiguous tensor holding `values` in row-major order.
    static Tensor from_vector(Shape shape, const std::vector<T>& values) {
        Tensor t = empty(std::move(shape));
        LLMBLOCKS_CHECK(static_cast<index_t>(values.size()) == t.numel(), "Tensor::from_vector: shape ",
                        t.shape_, " holds ", t.numel(), " elements but ", values.size(), " values were given");
        std::copy(values.begin(), values.end(), t.data());
        return t;
    }
    static Tensor from_vector(Shape shape, std::initializer_list<T> values) {
        return from_vector(std::move(shape), std::vector<T>(values));
    }
    // 0, 1, ..., n-1.
    static Tensor arange(index_t n) {
        Tensor t = empty({n});
        for (index_t i = 0; i < n; ++i) t.data()[i] = static_cast<T>(i);
        return t;
    }
    // Normal(mean, std) draws, in row-major order from `rng`.
    static Tensor randn(Shape shape, Rng& rng, double mean = 0.0, double std = 1.0) {
        Tensor t = empty(std::move(shape));
        for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(rng.normal(mean, std));
        return t;
    }
    // Uniform [lo, hi) draws (integers: lo <= x < hi).
    static Tensor rand(Shape shape, Rng& rng, double lo = 0.0, double hi = 1.0) {
        Tensor t = empty(std::move(shape));
        for (index_t i = 0; i < t.numel(); ++i) {
            if constexpr (std::is_integral_v<T>)
                t.data()[i] = static_cast<T>(rng.randint(static_cast<std::int64_t>(lo), static_cast<std::int64_t>(hi)));
            else
                t.data()[i] = static_cast<T>(rng.uniform(lo, hi));
        }
        return t;
    }

    // ---- geometry ----------------------------------------------------------
    bool defined() const { return storage_ != nullptr; }
    index_t dim() const { return static_cast<index_t>(shape_.size()); }
    const Shape& shape() const { return shape_; }
    const Shape& strides() const { return strides_; }
    index_t size(index_t d) const { return shape_[wrap_dim("Tensor::size", d)]; }
    index_t stride(index_t d) const { return strides_[wrap_dim("Tensor::stride", d)]; }
    index_t numel() const { return shape_numel(shape_); }
    index_t offset() const { return offset_; }
    // Pointer to the first element (element (0, 0, ...)). A Tensor is a handle:
    // a const handle still gives mutable access to the shared buffer.
    T* data() const { return storage_ ? storage_->data() + offset_ : nullptr; }
    bool is_contiguous() const {
        index_t expected = 1;
        for (std::size_t i = shape_.size(); i-- > 0;) {
            if (shape_[i] == 1) continue;
            if (strides_[i] != expected) return false;
            expected *= shape_[i];
        }
        return true;
    }
    bool same_storage(const Tensor& other) const { return storage_ == other.storage_; }
    long use_count() const { return storage_.use_count(); }

    // ---- copies --------------------------------------------------------------
    // This tensor if contiguous, else a contiguous copy.
    Tensor contiguous() const { return is_contiguous() ? *this : clone(); }
    // A contiguous deep copy.
    Tensor clone() const {
        require_defined("clone");
        Tensor out = empty(shape_);
        out.copy_(*this);
        return out;
    }
    template <class U>
    Tensor<U> to() const {
        require_defined("to");
        const Tensor src = contiguous();
        Tensor<U> out = Tensor<U>::empty(shape_);
        for (index_t i = 0; i < src.numel(); ++i) out.data()[i] = static_cast<U>(src.data()[i]);
        return out;
    }
    std::vector<T> to_vector() const {
        const Tensor src = contiguous();
        return std::vector<T>(src.data(), src.data() + src.numel());
    }

    // ---- in-place ------------------------------------------------------------
    Tensor& fill_(T value) {
        require_defined("fill_");
        if (is_contiguous()) {
            std::fill(data(), data() + numel(), value);
        } else {
            for_each_offset([&](index_t off) { storage_->data()[off] = value; });
        }
        return *this;
    }
    Tensor& zero_() { return fill_(T(0)); }
    // Copies src into this tensor; shapes must be equal. Overlapping views are not supported.
    Tensor& copy_(const Tensor& src) {
        require_defined("copy_");
        LLMBLOCKS_CHECK(src.defined(), "copy_: source tensor is undefined");
        LLMBLOCKS_CHECK(src.shape_ == shape_, "copy_: shape mismatch: destination ", shape_, " vs source ", src.shape_);
        if (is_contiguous() && src.is_contiguous()) {
            if (numel() > 0 && data() != src.data()) std::memmove(data(), src.data(), numel() * sizeof(T));
            return *this;
        }
        // Walk both index spaces in lockstep.
        std::vector<index_t> idx(shape_.size(), 0);
        const index_t n = numel();
        index_t dst_off = offset_, src_off = src.offset_;
        T* d = storage_->data();
        const T* s = src.storage_->data();
        for (index_t i = 0; i < n; ++i) {
            d[dst_off] = s[src_off];
            for (std::size_t k = shape_.size(); k-- > 0;) {
                if (++idx[k] < shape_[k]) {
                    dst_off += strides_[k];
                    src_off += src.strides_[k];
                    break;
                }
                dst_off -= strides_[k] * (shape_[k] - 1);
                src_off -= src.strides_[k] * (shape_[k] - 1);
                idx[k] = 0;
            }
        }
        return *this;
    }

    // ---- views (no copy) -----------------------------------------------------
    // Same elements, new shape; one size may be -1. Requires a contiguous tensor.
    Tensor view(Shape new_shape) const {
        require_defined("view");
        new_shape = infer_shape("view", std::move(new_shape));
        LLMBLOCKS_CHECK(is_contiguous(), "view: tensor of shape ", shape_, " with strides ", strides_,
                        " is not contiguous; use reshape() or contiguous()");
        Tensor t = *this;
        t.strides_ = contiguous_strides(new_shape);
        t.shape_ = std::move(new_shape);
        return t;
    }
    // view() when possible, else a contiguous copy with the new shape.
    Tensor reshape(Shape new_shape) const { return contiguous().view(std::move(new_shape)); }
    Tensor flatten() const { return reshape({numel()}); }

    Tensor transpose(index_t d0, index_t d1) const {
        require_defined("transpose");
        const auto a = wrap_dim("transpose", d0), b = wrap_dim("transpose", d1);
        Tensor t = *this;
        std::swap(t.shape_[a], t.shape_[b]);
        std::swap(t.strides_[a], t.strides_[b]);
        return t;
    }
    // Transpose of a 2-D tensor.
    Tensor t() const {
        LLMBLOCKS_CHECK(dim() == 2, "t: expected a 2-D tensor, got shape ", shape_);
        return transpose(0, 1);
    }
    // Reorders the dimensions: result dim i is this tensor's dim order[i].
    Tensor permute(const std::vector<index_t>& order) const {
        require_defined("permute");
        LLMBLOCKS_CHECK(static_cast<index_t>(order.size()) == dim(), "permute: order has ", order.size(),
                        " entries for a tensor of shape ", shape_);
        Tensor t = *this;
        std::vector<bool> seen(order.size(), false);
        for (std::size_t i = 0; i < order.size(); ++i) {
            const auto d = wrap_dim("permute", order[i]);
            LLMBLOCKS_CHECK(!seen[d], "permute: dimension ", order[i], " repeated for shape ", shape_);
            seen[d] = true;
            t.shape_[i] = shape_[d];
            t.strides_[i] = strides_[d];
        }
        return t;
    }
    // Elements [start, start + length) along dim d.
    Tensor narrow(index_t d, index_t start, index_t length) const {
        require_defined("narrow");
        const auto k = wrap_dim("narrow", d);
        LLMBLOCKS_CHECK(start >= 0 && length >= 0 && start + length <= shape_[k], "narrow: range [", start, ", ",
                        start + length, ") out of bounds for dim ", d, " of shape ", shape_);
        Tensor t = *this;
        t.offset_ += start * strides_[k];
        t.shape_[k] = length;
        return t;
    }
    // Elements start, start + step, ... < end along dim d (Python slice, step > 0).
    Tensor slice(index_t d, index_t start, index_t end, index_t step = 1) const {
        require_defined("slice");
        const auto k = wrap_dim("slice", d);
        LLMBLOCKS_CHECK(step > 0, "slice: step must be positive, got ", step);
        const index_t n = shape_[k];
        if (start < 0) start += n;
        if (end < 0) end += n;
        start = std::clamp<index_t>(start, 0, n);
        end = std::clamp<index_t>(end, start, n);
        Tensor t = *this;
        t.offset_ += start * strides_[k];
        t.shape_[k] = (end - start + step - 1) / step;
        t.strides_[k] *= step;
        return t;
    }
    // The sub-tensor at `index` along dim d; the result has one dimension less.
    Tensor select(index_t d, index_t index) const {
        require_defined("select");
        const auto k = wrap_dim("select", d);
        if (index < 0) index += shape_[k];
        LLMBLOCKS_CHECK(index >= 0 && index < shape_[k], "select: index ", index, " out of range for dim ", d,
                        " of shape ", shape_);
        Tensor t = *this;
        t.offset_ += index * strides_[k];
        t.shape_.erase(t.shape_.begin() + k);
        t.strides_.erase(t.strides_.begin() + k);
        return t;
    }
    // Inserts a size-1 dimension at position d (0 <= d <= dim(); negative counts from the end).
    Tensor unsqueeze(index_t d) const {
        require_defined("unsqueeze");
        if (d < 0) d += dim() + 1;
        LLMBLOCKS_CHECK(d >= 0 && d <= dim(), "unsqueeze: dimension ", d, " out of range for shape ", shape_);
        Tensor t = *this;
        const index_t stride = d < dim() ? strides_[d] * shape_[d] : 1;
        t.shape_.insert(t.shape_.begin() + d, 1);
        t.strides_.insert(t.strides_.begin() + d, stride);
        return t;
    }
    // Removes dimension d, which must have size 1.
    Tensor squeeze(index_t d) const {
        const auto k = wrap_dim("squeeze", d);
        LLMBLOCKS_CHECK(shape_[k] == 1, "squeeze: dimension ", d, " of shape ", shape_, " is not 1");
        return select(k, 0);
    }
    // Broadcasts size-1 dimensions (and new leading ones) to `target` with stride 0.
    Tensor expand(const Shape& target) const {
        require_defined("expand");
        LLMBLOCKS_CHECK(static_cast<index_t>(target.size()) >= dim(), "expand: cannot expand shape ", shape_,
                        " to fewer dimensions ", target);
        Tensor t = *this;
        const std::size_t lead = target.size() - shape_.size();
        t.shape_ = target;
        t.strides_.assign(target.size(), 0);
        for (std::size_t i = 0; i < shape_.size(); ++i) {
            const index_t have = shape_[i], want = target[lead + i];
            LLMBLOCKS_CHECK(have == want || have == 1, "expand: cannot expand shape ", shape_, " to ", target);
            t.strides_[lead + i] = have == want ? strides_[i] : 0;
        }
        return t;
    }

    // ---- element access --------------------------------------------------------
    // Unchecked: t(i, j, k) with one index per dimension.
    template <class... Idx>
    T& operator()(Idx... idx) const {
        static_assert((std::is_integral_v<Idx> && ...), "Tensor::operator(): indices must be integers");
        const index_t ids[] = {static_cast<index_t>(idx)..., 0};
        index_t off = offset_;
        for (std::size_t i = 0; i < sizeof...(Idx); ++i) off += ids[i] * strides_[i];
        return storage_->data()[off];
    }
    // Checked: throws Error on a wrong index count or an index out of range (negative counts from the end).
    T& at(std::initializer_list<index_t> idx) const {
        require_defined("at");
        LLMBLOCKS_CHECK(static_cast<index_t>(idx.size()) == dim(), "at: ", idx.size(),
                        " indices for a tensor of shape ", shape_);
        index_t off = offset_, d = 0;
        for (index_t i : idx) {
            const index_t n = shape_[d];
            const index_t j = i < 0 ? i + n : i;
            LLMBLOCKS_CHECK(j >= 0 && j < n, "at: index ", i, " out of range for dim ", d, " of shape ", shape_);
            off += j * strides_[d];
            ++d;
        }
        return storage_->data()[off];
    }
    // The single element of a one-element tensor.
    T item() const {
        require_defined("item");
        LLMBLOCKS_CHECK(numel() == 1, "item: tensor of shape ", shape_, " has ", numel(), " elements, not 1");
        return storage_->data()[offset_];
    }

    // ---- printing ----------------------------------------------------------------
    std::string to_string(int max_per_dim = 8) const {
        std::ostringstream os;
        os << "Tensor" << shape_str(shape_) << " ";
        if (!defined()) return os.str() + "undefined";
        os << std::setprecision(6);
        print_rec(os, 0, offset_, max_per_dim);
        return os.str();
    }
    friend std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

    // Calls fn(storage_offset) for every element in row-major order.
    template <class Fn>
    void for_each_offset(Fn&& fn) const {
        const index_t n = numel();
        if (n == 0) return;
        std::vector<index_t> idx(shape_.size(), 0);
        index_t off = offset_;
        for (index_t i = 0; i < n; ++i) {
            fn(off);
            for (std::size_t k = shape_.size(); k-- > 0;) {
                if (++idx[k] < shape_[k]) {
                    off += strides_[k];
                    break;
                }
                off -= strides_[k] * (shape_[k] - 1);
                idx[k] = 0;
            }
        }
    }
    // The raw buffer (for_each_offset's offsets index it).
    T* storage_data() const { return storage_ ? storage_->data() : nullptr; }

private:
    static void check_shape(const char* op, const Shape& shape) {
        for (index_t s : shape) LLMBLOCKS_CHECK(s >= 0, op, ": negative size in shape ", shape);
    }
    void require_defined(const char* op) const { LLMBLOCKS_CHECK(defined(), op, ": tensor is undefined"); }
    std::size_t wrap_dim(const char* op, index_t d) const {
        const index_t r = dim();
        const index_t k = d < 0 ? d + r : d;
        LLMBLOCKS_CHECK(k >= 0 && k < r, op, ": dimension ", d, " out of range for shape ", shape_);
        return static_cast<std::size_t>(k);
    }
    Shape infer_shape(const char* op, Shape s) const {
        index_t known = 1;
        int infer_at = -1;
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] == -1) {
                LLMBLOCKS_CHECK(infer_at < 0, op, ": more than one -1 in shape ", s);
                infer_at = static_cast<int>(i);
            } else {
                LLMBLOCKS_CHECK(s[i] >= 0, op, ": negative size in shape ", s);
                known *= s[i];
            }
        }
        if (infer_at >= 0) {
            LLMBLOCKS_CHECK(known != 0 && numel() % known == 0, op, ": cannot view shape ", shape_, " as ", s);
            s[infer_at] = numel() / known;
        }
        LLMBLOCKS_CHECK(shape_numel(s) == numel(), op, ": cannot view shape ", shape_, " (", numel(),
                        " elements) as ", s, " (", shape_numel(s), " elements)");
        return s;
    }
    void print_rec(std::ostream& os, std::size_t d, index_t off, int max_per_dim) const {
        const T* p = storage_->data();
        if (d == shape_.size()) {
            if constexpr (std::is_floating_point_v<T>)
                os << p[off];
            else
                os << +p[off];
            return;
        }
        os << "[";
        const index_t n = shape_[d];
        for (index_t i = 0; i < n; ++i) {
            if (i) os << (d + 1 == shape_.size() ? ", " : ",\n" + std::string(d + 1 + 7 + shape_str(shape_).size(), ' '));
            if (n > max_per_dim && i == max_per_dim / 2) {
                os << "...";
                i = n - max_per_dim / 2 - 1;
                continue;
            }
            print_rec(os, d + 1, off + i * strides_[d], max_per_dim);
        }
        os << "]";
    }

    std::shared_ptr<AlignedBuffer<T>> storage_;
    Shape shape_;
    Shape strides_;
    index_t offset_ = 0;
};

using TensorF = Tensor<float>;
using TensorD = Tensor<double>;
using TensorI = Tensor<std::int32_t>;

// ---- comparison ----------------------------------------------------------------

// The result of comparing two tensors element by element: whether every element
// satisfies |a - b| <= atol + rtol * |b|, and the worst element.
struct Comparison {
    bool ok = true;
    bool shapes_match = true;
    double max_abs_diff = 0.0;
    double max_rel_diff = 0.0;  // |a - b| / |b| at the worst element
    std::vector<index_t> worst_index;  // multi-index of the element with the largest excess over tolerance
    double actual = 0.0, expected = 0.0;
    std::string message;  // a one-line report, empty when ok

    explicit operator bool() const { return ok; }
};

// Compares `actual` against `expected` (same shape). NaN never matches.
template <class T, class U>
Comparison compare(const Tensor<T>& actual, const Tensor<U>& expected, double rtol = 1e-5, double atol = 1e-8) {
    Comparison c;
    if (actual.shape() != expected.shape()) {
        c.ok = c.shapes_match = false;
        c.message = "shape mismatch: actual " + shape_str(actual.shape()) + " vs expected " + shape_str(expected.shape());
        return c;
    }
    const Tensor<T> a = actual.contiguous();
    const Tensor<U> b = expected.contiguous();
    const index_t n = a.numel();
    double worst_excess = -std::numeric_limits<double>::infinity();
    index_t worst = -1;
    for (index_t i = 0; i < n; ++i) {
        const double x = static_cast<double>(a.data()[i]), y = static_cast<double>(b.data()[i]);
        const double diff = std::abs(x - y);
        const double tol = atol + rtol * std::abs(y);
        const bool bad = !(diff <= tol);  // also catches NaN
        const double excess = bad ? (std::isnan(diff) ? std::numeric_limits<double>::infinity() : diff - tol) : diff - tol;
        if (std::isnan(diff) || diff > c.max_abs_diff) c.max_abs_diff = std::max(c.max_abs_diff, diff);
        if (std::isnan(diff)) c.max_abs_diff = diff;
        if (bad) c.ok = false;
        if (excess > worst_excess) {
            worst_excess = excess;
            worst = i;
        }
    }
    if (worst >= 0) {
        c.actual = static_cast<double>(a.data()[worst]);
        c.expected = static_cast<double>(b.data()[worst]);
        const double diff = std::abs(c.actual - c.expected);
        c.max_rel_diff = c.expected != 0.0 ? diff / std::abs(c.expected) : (diff == 0.0 ? 0.0 : std::numeric_limits<double>::infinity());
        // unravel the flat index
        c.worst_index.assign(a.shape().size(), 0);
        index_t rem = worst;
        for (std::size_t k = a.shape().size(); k-- > 0;) {
            c.worst_index[k] = rem % a.shape()[k];
            rem /= a.shape()[k];
        }
    }
    if (!c.ok) {
        std::ostringstream os;
        os << std::setprecision(9) << "tensors differ: max |a-b| = " << c.max_abs_diff << "; worst at index "
           << shape_str(c.worst_index) << ": actual " << c.actual << " vs expected " << c.expected << " (rtol " << rtol
           << ", atol " << atol << ", shape " << shape_str(a.shape()) << ")";
        c.message = os.str();
    }
    return c;
}

template <class T, class U>
bool allclose(const Tensor<T>& actual, const Tensor<U>& expected, double rtol = 1e-5, double atol = 1e-8) {
    return compare(actual, expected, rtol, atol).ok;
}

}  // namespace llmblocks
