// Test support: TempDir, a fresh directory under the system temp directory that lives as long as the
// object and is removed with its contents at the end (shared by the io, train, cli and model tests).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace llmblocks::testing {

// Unique per instance: "llmblocks_<tag>_<pid>_<counter>_<random>". Created in the constructor; the
// destructor removes it with remove_all and never throws.
class TempDir {
public:
    explicit TempDir(const std::string& tag = "test") {
        static std::atomic<std::uint64_t> counter{0};
        std::random_device rd;
        path = std::filesystem::temp_directory_path() /
               ("llmblocks_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
                std::to_string(rd()));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::filesystem::path operator/(const std::string& name) const { return path / name; }

    // Names of the entries directly inside the directory, sorted.
    std::vector<std::string> entries() const {
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    }
    std::size_t count_entries() const { return entries().size(); }

    std::filesystem::path path;
};

// The whole file as bytes.
inline std::string read_bytes(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Replaces the file (removing it first: ext4 flushes a file truncated and rewritten in place, slowly).
inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace llmblocks::testing
