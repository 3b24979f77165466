// llmblocks/io/mapped_file.hpp — the io layer's two file-system primitives:
// MappedFile, a read-only memory mapping of a whole file, and AtomicFileWriter,
// which writes a file so that readers see either the old file or the complete
// new one, never a half-written checkpoint.
//
// The safetensors reader maps a checkpoint instead of reading it: opening a
// GPT-2 file costs one header parse, and a tensor's bytes are paged in from the
// page cache when first touched. POSIX only (open, fstat, mmap).
//
// Errors name the path and the reason (strerror text): "cannot open
// '/x/model.safetensors': No such file or directory".
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llmblocks/core/error.hpp"

namespace llmblocks {

namespace detail {

// strerror(errnum), thread-safe.
inline std::string errno_text(int errnum) { return std::generic_category().message(errnum); }

}  // namespace detail

// A read-only, private memory mapping of a whole regular file. Move-only; the
// mapping lives as long as the object. Throws Error for a missing file, a
// directory or other non-regular file, a file without read permission, or an
// empty file (there is nothing to map). The file must not be truncated by
// another process while it is mapped (POSIX would raise SIGBUS on access).
class MappedFile {
public:
    MappedFile() = default;
    explicit MappedFile(std::filesystem::path path) : path_(std::move(path)) {
        const std::string name = path_.string();
        int fd;
        do {
            fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            const int err = errno;
            fail("cannot open '", name, "': ", detail::errno_text(err));
        }
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int err = errno;
            ::close(fd);
            fail("cannot stat '", name, "': ", detail::errno_text(err));
        }
        if (S_ISDIR(st.st_mode)) {
            ::close(fd);
            fail("cannot map '", name, "': ", detail::errno_text(EISDIR));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            fail("cannot map '", name, "': not a regular file");
        }
        if (st.st_size == 0) {
            ::close(fd);
            fail("cannot map '", name, "': the file is empty");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        const int err = errno;
        ::close(fd);  // the mapping keeps its own reference to the file
        if (p == MAP_FAILED) fail("cannot map '", name, "' (", size_, " bytes): ", detail::errno_text(err));
        data_ = static_cast<const std::byte*>(p);
    }

    MappedFile(MappedFile&& other) noexcept
        : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    MappedFile& operator=(MappedFile&& other) noexcept {
        if (this != &other) {
            unmap();
            path_ = std::move(other.path_);
            data_ = std::exchange(other.data_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile() { unmap(); }

    const std::filesystem::path& path() const { return path_; }
    const std::byte* data() const { return data_; }
    std::size_t size() const { return size_; }
    std::span<const std::byte> bytes() const { return {data_, size_}; }
    bool is_open() const { return data_ != nullptr; }

private:
    void unmap() noexcept {
        if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
        data_ = nullptr;
        size_ = 0;
    }

    std::filesystem::path path_;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

// Writes `path` atomically: the bytes go to a new temporary file in the same
// directory (".<name>.tmp.<pid>.<n>"), and commit() flushes it to disk and
// renames it over `path`. If anything fails, or the writer is destroyed
// without commit() (an exception on the way), the temporary file is removed
// and an existing file at `path` is left untouched. Move-only.
class AtomicFileWriter {
public:
    explicit AtomicFileWriter(std::filesystem::path path) : path_(std::move(path)) {
        static std::atomic<std::uint64_t> counter{0};
        const std::filesystem::path dir = path_.has_parent_path() ? path_.parent_path() : std::filesystem::path(".");
        for (int attempt = 0;; ++attempt) {
            // Appended piece by piece: GCC 12 warns (-Wrestrict, falsely) on "." + std::string at -O3.
            std::string name = ".";
            name += path_.filename().string();
            name += ".tmp.";
            name += std::to_string(::getpid());
            name += '.';
            name += std::to_string(counter.fetch_add(1));
            tmp_ = dir / name;
            do {
                fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            } while (fd_ < 0 && errno == EINTR);
            if (fd_ >= 0) break;
            const int err = errno;
            if (err != EEXIST || attempt == 100)
                fail("cannot write '", path_.string(), "': cannot create a temporary file in '", dir.string(),
                     "': ", detail::errno_text(err));
        }
    }
    AtomicFileWriter(AtomicFileWriter&& other) noexcept
        : path_(std::move(other.path_)), tmp_(std::move(other.tmp_)), fd_(std::exchange(other.fd_, -1)),
          written_(other.written_) {}
    AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
    ~AtomicFileWriter() { abandon(); }

    const std::filesystem::path& path() const { return path_; }
    std::uint64_t bytes_written() const { return written_; }

    void write(const void* data, std::size_t n) {
        LLMBLOCKS_CHECK(fd_ >= 0, "cannot write '", path_.string(), "': the writer is closed");
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            // Linux writes at most 0x7ffff000 bytes per call; ask for 1 GiB at a time.
            const ssize_t w = ::write(fd_, p, n < (std::size_t(1) << 30) ? n : (std::size_t(1) << 30));
            if (w < 0) {
                if (errno == EINTR) continue;
                const int err = errno;
                abandon();
                fail("cannot write '", path_.string(), "': ", detail::errno_text(err));
            }
            p += w;
            n -= static_cast<std::size_t>(w);
            written_ += static_cast<std::uint64_t>(w);
        }
    }

    // Flushes the data to disk and renames the temporary file to `path`.
    void commit() {
        LLMBLOCKS_CHECK(fd_ >= 0, "cannot write '", path_.string(), "': the writer is closed");
        if (::fsync(fd_) != 0) {
            const int err = errno;
            abandon();
            fail("cannot write '", path_.string(), "': fsync: ", detail::errno_text(err));
        }
        const int fd = std::exchange(fd_, -1);
        if (::close(fd) != 0) {
            const int err = errno;
            ::unlink(tmp_.c_str());
            fail("cannot write '", path_.string(), "': close: ", detail::errno_text(err));
        }
        if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
            const int err = errno;
            ::unlink(tmp_.c_str());
            fail("cannot write '", path_.string(), "': ", detail::errno_text(err));
        }
        // Make the rename itself durable (best effort: some file systems refuse fsync on a directory).
        const std::filesystem::path dir = path_.has_parent_path() ? path_.parent_path() : std::filesystem::path(".");
        const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            ::fsync(dfd);
            ::close(dfd);
        }
    }

private:
    void abandon() noexcept {
        if (fd_ < 0) return;
        ::close(std::exchange(fd_, -1));
        ::unlink(tmp_.c_str());
    }

    std::filesystem::path path_;
    std::filesystem::path tmp_;
    int fd_ = -1;
    std::uint64_t written_ = 0;
};

}  // namespace llmblocks
