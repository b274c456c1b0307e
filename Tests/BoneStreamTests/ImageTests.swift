import BoneStreamImage
import Foundation
import Testing

@Suite struct PNGDecodeTests {
    private func fixture(_ name: String) -> String { repositoryRoot + "/Tests/Fixtures/png/" + name }
    private let gray: [UInt8] = [0, 50, 100, 255, 10, 20, 30, 40, 200, 201, 202, 203]
    // (299 R + 587 G + 114 B + 500) / 1000 of the RGB fixtures, computed in Python beside them.
    private let luminance: [UInt8] = [150, 138, 127, 91, 147, 145, 143, 140, 103, 103, 103, 103]

    private func decode8(_ name: String) throws -> GrayImage {
        guard case .gray8(let image) = try PNGCodec.decode(path: fixture(name)) else {
            Issue.record("\(name) should decode to 8 bits")
            return GrayImage(width: 1, height: 1)
        }
        return image
    }

    @Test func gray8() throws { #expect(try decode8("gray8.png").pixels == gray) }
    @Test func grayWithAlphaDropsAlpha() throws { #expect(try decode8("gray_alpha.png").pixels == gray) }
    @Test func rgbBecomesLuminance() throws { #expect(try decode8("rgb.png").pixels == luminance) }
    @Test func rgbaBecomesLuminance() throws { #expect(try decode8("rgba.png").pixels == luminance) }
    @Test func paletteBecomesLuminance() throws { #expect(try decode8("palette.png").pixels == luminance) }
    @Test func interlacedRGB() throws { #expect(try decode8("rgb_interlaced.png").pixels == luminance) }
    @Test func oneBitGrayExpands() throws {
        #expect(try decode8("gray1.png").pixels == gray.map { $0 > 100 ? 255 : 0 })
    }

    @Test func sixteenBitStaysSixteenUntilTheCrop() throws {
        let decoded = try PNGCodec.decode(path: fixture("gray16.png"))
        guard case .gray16(let w, let h, let pixels) = decoded else {
            Issue.record("expected 16 bits")
            return
        }
        #expect(w == 4 && h == 3)
        #expect(pixels == [0, 12851, 25702, 2, 2570, 5141, 7712, 10283, 51400, 51658, 51916, 52174])
        // No crop: the range [0, 52174] is stretched onto [0, 255].
        let eight = decoded.cropped(CropFractions(top: 0, bottom: 0, left: 0, right: 0))
        #expect(eight.pixels == pixels.map { UInt8((Int($0) * 255 + 52174 / 2) / 52174) })
        // A crop to the last row: that row's own range sets the window.
        let row = decoded.cropped(CropFractions(top: 0.67, bottom: 0, left: 0, right: 0))
        #expect(row.pixels == [0, 85, 170, 255])
    }

    @Test(arguments: [
        ("truncated.png", ""), ("corrupt.png", ""), ("not-a-png.png", "not a PNG"),
        ("zero.png", ""), ("bomb.png", ""), ("missing.png", "cannot open"),
    ])
    func badFilesAreTypedErrorsNamingTheFile(name: String, reason: String) throws {
        do {
            _ = try PNGCodec.decode(path: fixture(name), limits: DecodeLimits(maxSide: 20_000, maxPixels: 100_000_000))
            Issue.record("\(name) should not decode")
        } catch let error as ImageError {
            #expect(error.path.hasSuffix(name))
            #expect(error.description.hasPrefix(fixture(name) + ": "))
            #expect(!error.reason.isEmpty)
            if !reason.isEmpty { #expect(error.reason.contains(reason), "\(error)") }
        }
    }

    @Test(arguments: ["gray8.png", "gray16.png", "rgb.png", "rgba.png", "palette.png", "rgb_interlaced.png", "gray_alpha.png"])
    func decodingOnlyTheCropEqualsCroppingTheWholeImage(name: String) throws {
        for crop in [CropFractions(top: 0.34, bottom: 0.2, left: 0.25, right: 0.25), CropFractions(top: 0, bottom: 0.34, left: 0.5, right: 0),
                     CropFractions.none] {
            let whole = try PNGCodec.decode(path: fixture(name)).cropped(crop)
            let direct = try PNGCodec.decode(path: fixture(name), cropping: crop).eightBit()
            #expect(direct == whole, "\(name) \(crop)")
        }
        // A realistic image too.
        let dir = try TemporaryDirectory()
        let image = testImage(width: 301, height: 257)
        try PNGCodec.write(image, to: dir.path + "/t.png")
        let crop = CropFractions(top: 0.1, bottom: 0.05, left: 0.1, right: 0.1)
        #expect(try PNGCodec.decode(path: dir.path + "/t.png", cropping: crop).eightBit() == DecodedGray.gray8(image).cropped(crop))
    }

    @Test func pixelLimitRefusesBeforeDecoding() throws {
        do {
            _ = try PNGCodec.decode(path: fixture("gray8.png"), limits: DecodeLimits(maxSide: 100, maxPixels: 11))
            Issue.record("12 pixels should exceed a limit of 11")
        } catch let error as ImageError {
            #expect(error.reason.contains("more than the limit of 11"))
        }
    }

    @Test func encodeDecodeRoundTrip() throws {
        let dir = try TemporaryDirectory()
        var random = SystemRandomNumberGenerator()
        let image = GrayImage(width: 37, height: 23, pixels: (0..<(37 * 23)).map { _ in UInt8.random(in: 0...255, using: &random) })
        try PNGCodec.write(image, to: dir.path + "/r.png", level: 6)
        guard case .gray8(let back) = try PNGCodec.decode(path: dir.path + "/r.png") else { Issue.record("8-bit"); return }
        #expect(back == image)
    }
}

@Suite struct CropTests {
    @Test func rectangleFollowsNumpySlicing() {
        let crop = CropFractions(top: 0.1, bottom: 0.05, left: 0.1, right: 0.1)
        let r = crop.rectangle(width: 1999, height: 2501)
        // img[int(2501*0.1):int(2501*0.95), int(1999*0.1):int(1999*0.9)]
        #expect(r.y0 == 250 && r.y1 == 2375 && r.x0 == 199 && r.x1 == 1799)
    }

    @Test func cropCopiesTheRightPixels() {
        let image = GrayImage(width: 10, height: 10, pixels: (0..<100).map { UInt8($0) })
        let out = DecodedGray.gray8(image).cropped(CropFractions(top: 0.2, bottom: 0.3, left: 0.1, right: 0.5))
        #expect(out.width == 4 && out.height == 5)
        #expect(out[0, 0] == 21 && out[3, 4] == 64)
    }
}
